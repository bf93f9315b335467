// Where an encrypted store's master key comes from (crypto/keys.h): the
// key file named by `key-file` (default $BASE/store.key), unlocked with a
// passphrase from `passphrase-file` or typed at the terminal when it is a
// passphrase file; an unattended key file needs none. A plain store has
// no key file, and none is needed.
//
// `musclefs init --encrypt` makes the master key and its first key file;
// `musclefs key add|remove` add and remove passphrases (other key files for
// the same key) without re-encrypting anything; `musclefs key rotate`
// gives the store a new current key (crypto/keyring.h) and replaces the
// key file in force by one holding it, after which key files holding the
// older key open the store no more (server/main.cc).
//
// Nothing here logs or prints a passphrase or a key; messages name files.
// Threading: called on the main thread before the server starts.
#pragma once

#include <memory>
#include <string>

#include "common/result.h"
#include "crypto/keys.h"

namespace muscle::server {

struct KeyOptions {
  std::string key_file;         // the key file; "" = $BASE/store.key if it exists
  std::string default_key_file; // $BASE/store.key
  std::string passphrase_file;  // a file (mode 0600, ours) holding the passphrase
  // key add: the new file's passphrase from this file (else asked at the terminal).
  std::string new_passphrase_file;

  // The key file in force: key_file, else the default.
  const std::string& Path() const { return key_file.empty() ? default_key_file : key_file; }
};

// The store's master key: null when no key file is named and the default
// one does not exist (a plain store). Errors name the file: ENOENT for a
// named file that is missing, EACCES for a wrong passphrase, EINVAL for a
// malformed file or when a passphrase is needed and there is no
// passphrase file and no terminal.
Result<std::shared_ptr<const crypto::MasterKey>> LoadStoreKey(const KeyOptions& options);

// A passphrase for `what`: the first line of `file` (mode 0600, ours), or
// typed at the terminal without echo (twice when `confirm`). EINVAL when
// there is neither, or it is empty.
Result<std::string> ReadPassphrase(const std::string& file, const std::string& what, bool confirm);

}  // namespace muscle::server

// Error handling without exceptions: a Status carries a Linux errno (0 means
// success) and an optional message; Result<T> is a value or a Status.
//
// 9P2000.L reports failures as Rlerror(errno), so every layer speaks errno.
// The message is for logs and command-line errors only; it never goes on the
// wire. Both types are plain values and are safe to move between threads.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace muscle {

class Status {
 public:
  Status() = default;
  explicit Status(int err, std::string msg = {}) : err_(err), msg_(std::move(msg)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return err_ == 0; }
  int err() const { return err_; }
  const std::string& message() const { return msg_; }
  std::string ToString() const;

 private:
  int err_ = 0;
  std::string msg_;
};

template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Status s) : v_(std::move(s)) {}

  bool ok() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  Status status() const { return ok() ? Status() : std::get<1>(v_); }
  int err() const { return ok() ? 0 : std::get<1>(v_).err(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace muscle

#define MUSCLE_RETURN_IF_ERROR(expr)    \
  do {                                  \
    ::muscle::Status _s = (expr);       \
    if (!_s.ok()) return _s;            \
  } while (0)

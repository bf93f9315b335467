// The SSH side of muscle: `muscle stdio` (run on the server host, usually
// by sshd) and `muscle mount --ssh` (run on the client). Each takes the
// arguments after its subcommand and returns the exit status.
#pragma once

namespace muscle::cli {

// muscle stdio [--base DIR] [--socket PATH] [--identity NAME] [--root /PATH]
//              [--read-only]
// Connects stdin/stdout to the server's unix socket, claiming the identity
// and restrictions given (transport/claim.h), until both directions end.
int StdioMain(int argc, char** argv);

// muscle mount --ssh [USER@]HOST DIR [--base DIR] [--identity NAME]
//              [--root /PATH] [--read-only] [--ssh-command CMD] [--msize N]
//              [--aname PATH] [-o OPTS] [--remote-muscle PATH]
// Runs `ssh HOST muscle stdio ...` on one end of a socketpair and mounts
// the other end with trans=fd; ssh is then the only process left.
int SshMountMain(int argc, char** argv);

// Whether argv (after the program name) asks for `muscle mount --ssh`.
bool WantsSshMount(int argc, char** argv);

}  // namespace muscle::cli

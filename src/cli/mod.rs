//! Operator subcommands that are not the daemon itself.

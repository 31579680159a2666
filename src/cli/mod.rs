//! Operator subcommands that are not the daemon itself.

pub mod check;
pub mod health;
pub mod ops;
pub mod transform;

//! One module per group of commands; each reads its flags (clap `Args`) and acts through the
//! crates that do the work.

pub mod buyer;
pub mod console;
pub mod dev;
pub mod doctor;
pub mod lab;
pub mod ops;
pub mod tenant;

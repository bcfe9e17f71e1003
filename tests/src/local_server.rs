//! A server program (moto, scim2-server, ...) as a child process on a free loopback port: the
//! lab's [`enroll_lab::local_server`], which moto's launcher uses too.

pub use enroll_lab::local_server::*;

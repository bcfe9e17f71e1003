//! End-to-end tests.

pub mod console;
pub mod emf;
pub mod enroll_bin;
pub mod event_source;
pub mod lambda_watch;
pub mod local_server;
pub mod log_capture;
pub mod moto;
pub mod outbound_receiver;
pub mod scim_server;
pub mod tenant_fixtures;

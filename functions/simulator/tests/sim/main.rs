//! Black-box tests: each starts a simulator on a free port and talks to it over real HTTP.

mod admin;
mod faults;
mod filters;
mod groups;
mod notion;
mod strict;
mod support;
mod users;

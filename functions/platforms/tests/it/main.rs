//! One integration-test binary for enroll-platforms: every platform's verification and
//! normalisation against realistic fixtures, `sample` round trips, and a property test that
//! nothing panics.

mod common;
mod gumroad;
mod lemonsqueezy;
mod mapped;
mod mapped_properties;
mod paddle;
mod properties;
mod samples;
mod shopify;
mod standard;
mod stripe;
mod thrivecart;

//! The end-to-end tests, one crate (one binary to link): each module tests one
//! side of the restaurant against the real thing, started by [`support`] on
//! port 0 with a fresh data directory, in this process or as the real binary.
//!
//! The property tests stay a crate of their own (`tests/properties.rs`): they
//! lower the store's compaction threshold for the whole process, which would
//! change every restaurant these tests start in-process.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod api_doc;
mod boards;
mod broker;
mod broker_outage;
mod browser;
mod checker;
mod cli;
mod cluster;
mod connections;
mod crash_points;
mod durability;
mod file_faults;
mod file_modes;
mod full;
mod heartbeat;
mod hostile_input;
mod identity;
mod injected_faults;
mod kill_storm;
mod kitchen;
mod lab;
mod metrics;
mod poison;
mod postgres;
mod restaurant;
mod rush;
mod sharing;
mod throttle;

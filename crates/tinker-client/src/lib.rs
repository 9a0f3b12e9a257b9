//! Tinker clients: ServiceClient, TrainingClient, SamplingClient, RestClient, AdminClient.
//!
//! This crate is being built; see the README for what works today.

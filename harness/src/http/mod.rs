//! HTTP from the gatekeeper's side: requests to the provider's server (and, in
//! later flows, the enrollment API and media proxy).

pub mod client;
pub mod signing;

pub use client::{HttpRequest, HttpResponse, MAX_RESPONSE_BODY, send};

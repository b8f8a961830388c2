//! Placeholder replaced by the media proxy benchmark (issue 10).
fn main() {}

//! Decode and encode of a PUBLISH with a 64-byte payload, MQTT 3.1.1 and 5.0.
fn main() {}

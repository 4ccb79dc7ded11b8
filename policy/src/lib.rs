//! Warden policy engine (being written).

//! Store traits (being written).

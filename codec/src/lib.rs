//! MQTT codec (being written).

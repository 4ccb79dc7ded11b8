//! Tests of config loading: every error names its field and line.

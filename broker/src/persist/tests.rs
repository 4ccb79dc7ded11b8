//! Tests of the session store on the real engine in a temp dir.

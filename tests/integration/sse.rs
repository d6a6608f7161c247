use crate::support::TestHub;

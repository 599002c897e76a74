//! ResourceQuota rules shared by the API server's quota admission and the controller-manager's
//! resourcequota controller: quantity arithmetic, what objects use of the resources a quota
//! limits, and whether a new object fits the quotas of its namespace.

#![forbid(unsafe_code)]

mod admission;
mod quantity;
mod usage;

pub use admission::{admit, Charge, Counted, Refusal};
pub use quantity::Amount;
pub use usage::{source_of, usage, Observed, Source};

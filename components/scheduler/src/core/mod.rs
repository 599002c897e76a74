//! The scheduling algorithm with no Kubernetes client: the cluster cache, filters, scores,
//! the queue and preemption, all pure and unit-tested.

pub mod algorithm;
pub mod cache;
pub mod filters;
pub mod framework;
pub mod node;
pub mod pod;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scores;
pub mod selectors;

#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;

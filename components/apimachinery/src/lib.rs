//! Object rules shared by hakube components, working directly on
//! `serde_json::Value` objects: Kubernetes `Status` errors with upstream's
//! codes and message texts ([`status`]), label and field selectors
//! ([`labels`], [`fields`]), name and `ObjectMeta` validation
//! ([`validation`]), and JSON merge / JSON patch application ([`patch`]).
#![forbid(unsafe_code)]

pub mod fields;
pub mod labels;
pub mod patch;
pub mod status;
pub mod validation;

pub use fields::FieldSelector;
pub use labels::{LabelSelector, Operator, Requirement, SelectorError};
pub use patch::{json_patch, merge_patch, PatchError};
pub use status::{ApiError, StatusCause, StatusDetails, OBJECT_MODIFIED};
pub use validation::{validate_object_meta, NameRule};

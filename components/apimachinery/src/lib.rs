//! Object rules shared by hakube components, working directly on
//! `serde_json::Value` objects: Kubernetes `Status` errors with upstream's
//! codes and message texts ([`status`]), label and field selectors
//! ([`labels`], [`fields`]), name and `ObjectMeta` validation
//! ([`validation`]), JSON merge / JSON patch application ([`patch`]),
//! strategic merge patch driven by a caller-supplied schema ([`strategic`]),
//! and decoding of Kubernetes protobuf request bodies into JSON ([`protobuf`]).
#![forbid(unsafe_code)]

pub mod fields;
pub mod labels;
pub mod patch;
pub mod protobuf;
pub mod status;
pub mod strategic;
pub mod validation;

pub use fields::FieldSelector;
pub use labels::{LabelSelector, Operator, Requirement, SelectorError};
pub use patch::{json_patch, merge_patch, PatchError};
pub use protobuf::ProtobufError;
pub use status::{ApiError, StatusCause, StatusDetails, OBJECT_MODIFIED};
pub use strategic::{strategic_merge_patch, FieldStrategy, PatchSchema, StrategicPatchError};
pub use validation::{validate_object_meta, NameRule};

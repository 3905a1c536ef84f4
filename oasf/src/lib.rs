//! OASF (Open Agentic Schema Framework) records, the skill/domain taxonomy and record validation,
//! with no network access.
//!
//! Spec: <https://github.com/agntcy/oasf> (schema definitions under `schema/`, served at
//! <https://schema.oasf.outshift.com>). An OASF record describes an agent for the AGNTCY
//! Directory: name, version, authors, taxonomy skills and domains, locators, and modules such
//! as the `integration/a2a` module that carries the agent's A2A card.
//!
//! - [`Record`] and its parts: serde types for a 1.x record, refusing unknown attributes.
//! - [`validate_record`]: checks a record given as JSON (0.7.0, 0.8.0, 1.0.0, 1.1.0) and
//!   reports errors and warnings with paths and stable codes; with a [`Taxonomy`], also checks
//!   every skill and domain `{id, name}`.
//! - [`Taxonomy`]: the skill and domain classes of one schema version, read from the schema's
//!   definition files by [`Taxonomy::load_dir`], the only entry point that reads files.

mod record;
mod taxonomy;
mod validate;

pub use record::{
    ClassRef, Descriptor, Locator, LocatorType, Module, Record, A2A_MODULE, SCHEMA_VERSION,
};
pub use taxonomy::{ClassRefError, Family, Taxonomy, TaxonomyError};
pub use validate::{
    validate_record, Issue, IssueCode, Report, SchemaVersion, RESERVED_ANNOTATION_PREFIX,
    TOOL_ACCEPTED_SCHEMA_VERSIONS,
};

#[cfg(test)]
mod tests;

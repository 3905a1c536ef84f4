//! OASF (Open Agentic Schema Framework) records and the skill/domain taxonomy.
//!
//! Spec: <https://github.com/agntcy/oasf> (schema definitions under `schema/`, served at
//! <https://schema.oasf.outshift.com>). An OASF record describes an agent for the AGNTCY
//! Directory: name, version, authors, taxonomy skills and domains, locators, and modules such
//! as the `integration/a2a` module that carries the agent's A2A card.
//!
//! - [`Taxonomy`]: the skill and domain classes of one schema version, read from the schema's
//!   definition files (no network).

mod taxonomy;

pub use taxonomy::{ClassRefError, Family, Taxonomy, TaxonomyError};

//! The domain rules of the node, without HTTP: who may act on whom, what a stored or published
//! string may contain, how failed authentications are throttled and audited.

pub(crate) mod authz;
pub(crate) mod failures;
pub(crate) mod text;

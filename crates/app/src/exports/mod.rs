//! What leaves Tactful in bulk: a person's own package (access and portability, [`package`]) and
//! pseudonymized datasets for analysis ([`dataset`]).

pub mod dataset;
pub mod package;
mod package_html;

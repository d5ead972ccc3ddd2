pub mod ping;
pub mod sample;

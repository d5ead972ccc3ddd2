pub mod batch;
pub mod history;
pub mod load;
pub mod local;
pub mod ping;
pub mod sample;

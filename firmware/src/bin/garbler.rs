#![no_std]
#![no_main]
use dash_firmware as _;
#[cortex_m_rt::entry]
fn main() -> ! { dash_firmware::exit(Ok(())) }

//! `dashgc`: the Dash command-line tool.
fn main() {
    println!("dashgc");
}

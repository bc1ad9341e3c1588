//! Places the functions that a `hubcli` run executes together (see `hivehub_memory`): a run is
//! a few milliseconds, and mapping the code it touches is a visible part of it.

fn main() {
    hivehub_memory::build::link_order("hubcli", "link-order.txt");
}

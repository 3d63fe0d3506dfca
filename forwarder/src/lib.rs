//! flowpin: the forwarder library (datapath, AF_XDP I/O, control plane, CLI).

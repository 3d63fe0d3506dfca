//! AF_XDP sockets, UMEM and rings (placeholder).

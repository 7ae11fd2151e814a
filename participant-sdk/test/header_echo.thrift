// A user's own service for the header-propagation tests: no transaction
// field anywhere. Used by thrift_headers_test (in process) and by the
// header_echo_service process of the process tests.
namespace cpp txc.headertest
namespace py header_echo

exception Refused {
  1: string message,
}

service Echo {
  // The gtid of the current transaction context on the server ("" outside
  // one), followed by "|" and what the next hop answered, when `next_hop` names
  // an endpoint ("host:port") to call whoami on.
  string whoami(1: string next_hop) throws (1: Refused refused),
  // Throws Refused inside the context (the decorator must still clear it).
  void fail() throws (1: Refused refused),
  // The server-side context of the previous call on this connection's thread
  // must be gone: "" when no context is current.
  string current(),
  // Runs a failing SQL statement through the service's database resource
  // (a NOT NULL violation) and throws Refused: only this call's work is undone.
  void bad_sql() throws (1: Refused refused),
  oneway void ping(),
  // Who the server says is calling: PeerIdentity::Describe() of the
  // connection ("CN=<cn> from <address>" under mutual TLS).
  string caller(),
}

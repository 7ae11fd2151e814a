// A one-call service for the Thrift ceiling of coord_bench: the same server
// class, transport and protocol as the coordinator, doing no work.
namespace cpp txc.benchwire

service Echo {
  binary echo(1: binary data),
}

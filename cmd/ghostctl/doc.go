// Command ghostctl drives a GhostDB cluster from the shell, the way
// redis-cli or memcached's stats are used, through the HTTP gateway that
// every node serves on its port (7991 by default): the original GhostDB
// HTTP/JSON protocol, and the JSON behind the dashboard. Any node answers
// for any key; stats and top gather the figures of every member from the
// node asked.
//
// Install it, or run it from a clone of the repository:
//
//	go install github.com/ghostdb/ghost/cmd/ghostctl@latest
//	go run ./cmd/ghostctl -h
//
// # Usage
//
//	ghostctl [flags] <command> [arguments]
//
// Commands:
//
//	members                   the members of the cluster and their state
//	ping                      ping every member over HTTP, with round-trip times
//	get KEY                   print the value stored under KEY, as JSON
//	put KEY VALUE [-ttl D]    store VALUE under KEY, replacing any pair there
//	add KEY VALUE [-ttl D]    store VALUE under KEY only if no pair holds KEY
//	delete KEY                remove the pair stored under KEY
//	flush                     remove every pair from every node
//	stats                     per node: pairs, bytes, hit ratio, requests/s, memory
//	top [-interval D] [-n N]  stats, refreshed until interrupted (Ctrl-C)
//	force-quorum              let the node named by -addr, the coordinator of a side
//	                          that lost its majority for good, carry on without it
//
// VALUE is parsed as JSON when it is valid JSON (42, 1.5, true, null,
// "quoted", [1, 2], {"name": "Ada"}) and taken as a string otherwise
// (hello). Put arguments that begin with "-" and are not numbers after
// "--":
//
//	ghostctl put greeting -- -hello-
//
// Flags go before or after the command:
//
//	-addr HOST:PORT  the node to talk to (default 127.0.0.1:7991; no port means 7991)
//	-nodes FILE      a node file, as Config.PeersFile (a path or an http(s) URL):
//	                 the first listed node that answers is used
//	-token T         sent as "Authorization: Bearer T", for nodes that want a token
//	-json            print results as JSON: the node's replies for get, put, add,
//	                 delete and flush; arrays of nodes for the others
//	-timeout D       how long to wait for a node (default 5s)
//	-ttl D           put, add: how long the pair lives, in whole seconds: 90s, 10m,
//	                 2h, or never (default: the node's Config.DefaultTTL)
//	-interval D      top: time between refreshes (default 2s)
//	-n N             top: stop after N refreshes (default 0: until interrupted)
//
// -addr and -nodes do not go together; -ttl goes only with put and add,
// -interval and -n only with top. The token travels in clear over plain
// HTTP: run ghostctl on the node's host or on a trusted network.
//
// # Exit status
//
//	0  success
//	1  CACHE_MISS, NOT_STORED or NOT_FOUND (the word is printed on stderr)
//	2  a usage error, a node that cannot be reached, or an error a node reports
//	   (a bad key, ERR_FLUSH, ...)
//
// Scripts can test the status: 1 is an answer of the cache, not a failure.
//
// # What each command asks
//
// get, put, add, delete and flush are the original protocol's commands
// (POST /get, ...). members is POST /members, an addition: the members as
// the node asked sees them, each with its address, name and state. ping
// asks every member for GET /ping from where ghostctl runs. stats and top
// read GET /dashboard/data, the figures the node asked gathers from every
// member. -json prints the node's reply for the key commands and arrays of
// nodes for the others (top -json prints one document per refresh).
//
// # Examples
//
//	ghostctl put user:42 '{"name": "Ada", "langs": ["en", "fr"]}' -ttl 10m
//	ghostctl get user:42
//	ghostctl -addr 10.0.0.7 stats
//	ghostctl -nodes /etc/ghostdb/nodes.conf top
//	ghostctl -json members | jq -r '.[].addr'
//
// Against the cluster of "go run ./examples/cluster -wait", 2 minutes into
// its traffic:
//
//	$ ghostctl -addr 127.0.0.1:36601 put user:42 '{"name": "Ada", "langs": ["en", "fr"]}' -ttl 10m
//	STORED
//	$ ghostctl -addr 127.0.0.1:36601 get user:42
//	{"langs":["en","fr"],"name":"Ada"}
//	$ ghostctl -addr 127.0.0.1:36601 add user:42 other; echo $?
//	NOT_STORED
//	1
//	$ ghostctl -addr 127.0.0.1:36601 ping
//	NODE              PING   TIME
//	127.0.0.1:36601   OK     1.35 ms
//	127.0.0.1:37435   OK     0.89 ms
//	127.0.0.1:46865   OK     1.73 ms
//	$ ghostctl -addr 127.0.0.1:36601 stats
//	NODE                STATE   PAIRS   DATA      HIT     REQ/S   HEAP      SYS        GOROUTINES   OWNS   BACKS UP
//	127.0.0.1:36601 *   alive   157     2.9 KiB   78.4%   13.0    4.2 MiB   13.2 MiB   26           87     71
//	127.0.0.1:37435     alive   148     2.7 KiB   75.1%   15.0    3.1 MiB   12.6 MiB   21           71     113
//	127.0.0.1:46865     alive   197     3.6 KiB   75.3%   21.9    4.2 MiB   16.8 MiB   21           113    87
//	total                       502     9.2 KiB   76.2%   49.9
//	* the node asked (127.0.0.1:36601). HIT: gets that found a pair since each node started; REQ/S: served, over the last second.
package main

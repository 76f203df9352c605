// Package modules runs the tests of the repository's other modules when
// go test ./... runs from the root, and holds nothing else.
//
// cmd/ghostbench and internal/browsertest are modules of their own, so that
// what only they need (the clients of memcached and Redis, otter, chromedp)
// is not required by the library. But a package pattern never crosses a
// go.mod, not even in workspace mode: go test ./... from the root lists the
// root module's packages only. TestModules closes the gap by running go
// test ./... in every other module under the root, with this run's -race,
// -short, -v, -count and -failfast, so that the README's go test -race ./...
// still tests everything.
package modules

// Package browsertest holds the dashboard's test in headless Chromium
// (dashboard_browser_test.go) and nothing else.
//
// It is a module of its own so that chromedp, which drives the browser, is
// not a requirement of github.com/ghostdb/ghost: a user's go get of the
// library would otherwise list chromedp and its dependencies in their
// go.sum. Being outside the root package, the test reads the cluster only
// through the exported API, as a user's program would. The go.work at the
// repository root includes this module, so go test ./... from the root runs
// the test.
package browsertest

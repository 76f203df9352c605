//go:build race

package modules

// The child go test runs with -race when this one does.
func init() { raceEnabled = true }

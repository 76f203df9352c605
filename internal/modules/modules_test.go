package modules

import (
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// root is the repository's root, seen from this package's directory, where
// go test runs the test.
var root = filepath.Join("..", "..")

// raceEnabled reports whether this test was built with -race (race_test.go).
var raceEnabled bool

// TestModules runs go test ./... in every module under the root but the
// root's, one after the other (each child go test already runs its
// packages in parallel).
func TestModules(t *testing.T) {
	dirs := otherModules(t)
	if len(dirs) == 0 {
		t.Fatalf("no go.mod under %s but the root's: the other modules' tests would silently not run", root)
	}
	recordEnvironment()
	if _, err := exec.LookPath("go"); err != nil {
		// go test puts its own GOROOT/bin first on the PATH of tests.
		t.Fatalf("no go command to test the other modules with: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.ToSlash(dir), func(t *testing.T) {
			args := append(childFlags(t), "./...")
			cmd := exec.Command("go", args...)
			cmd.Dir = filepath.Join(root, dir)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			t.Logf("go %s (in %s, %v):\n%s", strings.Join(args, " "), dir, time.Since(start).Round(time.Millisecond), out)
			if err != nil {
				t.Errorf("go test in %s: %v", dir, err)
			}
		})
	}
}

// otherModules returns the directories, relative to root, of the modules
// under root other than root's own, skipping what the go command skips
// (directories named testdata or beginning with . or _).
//
// It reads every directory of the repository but .git, even those it
// skips, and that is on purpose: go test caches this test's result, keyed
// on the directories and files the test read, and a child go test's reads
// are not the test's. Listing every directory makes a change to any file
// of the repository (the library's, a tool's, a go.mod) run this test
// again rather than report a cached result; the child go test then runs
// only what the change concerns, from its own cache.
func otherModules(t *testing.T) []string {
	t.Helper()
	var dirs []string
	skipped := map[string]bool{} // directories the go command ignores, and all below them
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if name == ".git" {
				return fs.SkipDir
			}
			if path != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || skipped[filepath.Dir(path)]) {
				skipped[path] = true
			}
			return nil
		}
		if name == "go.mod" && !skipped[filepath.Dir(path)] {
			dir, err := filepath.Rel(root, filepath.Dir(path))
			if err != nil {
				return err
			}
			if dir != "." {
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing the modules under %s: %v", root, err)
	}
	return dirs
}

// recordEnvironment reads every environment variable, so that go test
// keys this test's cached result on all of them: the child go test and
// the tests it runs see the whole environment (GOFLAGS, GOWORK, PATH,
// GHOST_DASHBOARD_PNG, ...), and go test only knows of the variables the
// test itself read.
func recordEnvironment() {
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name != "" {
			os.Getenv(name)
		}
	}
}

// childFlags returns the go test command line for a child, but its
// packages: this run's -race, -short, -v, -count and -failfast, and a
// -timeout that ends before this test's, so that a child's hung test
// fails with its own goroutine dump rather than this test's.
func childFlags(t *testing.T) []string {
	args := []string{"test"}
	if raceEnabled {
		args = append(args, "-race")
	}
	if testing.Short() {
		args = append(args, "-short")
	}
	if testing.Verbose() {
		args = append(args, "-v")
	}
	flag.Visit(func(f *flag.Flag) { // the flags set on the command line only
		switch f.Name {
		case "test.count", "test.failfast":
			args = append(args, "-"+strings.TrimPrefix(f.Name, "test.")+"="+f.Value.String())
		}
	})
	if deadline, ok := t.Deadline(); ok {
		// At least a second: -timeout=0s would be no timeout at all.
		left := max(time.Until(deadline)*9/10, time.Second)
		args = append(args, "-timeout="+left.Round(time.Second).String())
	}
	return args
}

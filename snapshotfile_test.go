package ghost

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// sampleSnapshot is a snapshot of two partitions, encoded.
func sampleSnapshot(t testing.TB) (snapshotHeader, []snapshotPart, []byte) {
	h := snapshotHeader{taken: 1 << 60, wall: 1_700_000_000_000_000_000, partitions: 7, addr: "127.0.0.1:7991"}
	parts := []snapshotPart{
		{partition: 2, complete: true, forgotten: 99, pairs: []pairCopy{
			{key: "a", value: []byte{0xa1, 'x'}, version: 100},
			{key: "b", value: []byte{0xc0}, expires: 1_800_000_000_000_000_000, version: 101},
			{key: "c", version: 102, tombstone: true},
		}},
		{partition: 5, pairs: []pairCopy{}},
	}
	var buf bytes.Buffer
	sw := newSnapshotWriter(&buf, h)
	for _, sp := range parts {
		sw.part(sp.partition, sp.complete, sp.forgotten, sp.pairs)
	}
	if err := sw.finish(); err != nil {
		t.Fatal(err)
	}
	if sw.bytes != int64(buf.Len()) || sw.pairs != 3 {
		t.Fatalf("the writer counts %d bytes and %d pairs; it wrote %d bytes", sw.bytes, sw.pairs, buf.Len())
	}
	return h, parts, buf.Bytes()
}

func writeTemp(t testing.TB, b []byte) string {
	path := filepath.Join(t.TempDir(), snapshotFile)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSnapshotFileRoundTrip(t *testing.T) {
	h, parts, b := sampleSnapshot(t)
	gotH, gotParts, err := readSnapshotFile(writeTemp(t, b), 7)
	if err != nil {
		t.Fatal(err)
	}
	if gotH != h || !reflect.DeepEqual(gotParts, parts) {
		t.Fatalf("read back\n%+v %+v\nwant\n%+v %+v", gotH, gotParts, h, parts)
	}
}

// resum replaces the checksum at the end of b with b's own.
func resum(b []byte) []byte {
	body := b[:len(b)-4]
	return binary.BigEndian.AppendUint32(slicesClone(body), crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

func slicesClone(b []byte) []byte { return append([]byte(nil), b...) }

func TestSnapshotFileRefusesWhatItCannotTrust(t *testing.T) {
	_, _, good := sampleSnapshot(t)
	otherFormat := slicesClone(good)
	otherFormat[len(snapshotMagic)+1] = 9
	flipped := slicesClone(good)
	flipped[len(flipped)/2] ^= 0x40
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-9]},
		{"a bit flipped", flipped},
		{"another format", resum(otherFormat)},
		{"not a snapshot", resum(append([]byte("GHOSTSNQ"), good[8:]...))},
		{"garbage", bytes.Repeat([]byte{0xff}, 300)},
		{"bytes after the end", resum(append(slicesClone(good[:len(good)-4]), 0, 0, 0, 0, 0))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := readSnapshotFile(writeTemp(t, tc.b), 7)
			if !errors.Is(err, errSnapshotFile) {
				t.Fatalf("read: %v, want errSnapshotFile", err)
			}
		})
	}
	t.Run("another partition count", func(t *testing.T) {
		_, _, err := readSnapshotFile(writeTemp(t, good), 271)
		if !errors.Is(err, errSnapshotFile) {
			t.Fatalf("read: %v, want errSnapshotFile", err)
		}
	})
}

// FuzzDecodeSnapshot: whatever the bytes (past the checksum, which a
// corrupt file may still match by chance), decoding fails or succeeds
// without a panic or an allocation beyond its bounds.
func FuzzDecodeSnapshot(f *testing.F) {
	_, _, good := sampleSnapshot(f)
	f.Add(good[:len(good)-4])
	f.Add([]byte(snapshotMagic + "\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, parts, err := decodeSnapshot(bufio.NewReader(bytes.NewReader(b)), 7)
		if err == nil {
			for _, sp := range parts {
				if sp.partition >= 7 {
					t.Fatalf("partition %d of 7", sp.partition)
				}
			}
		}
	})
}

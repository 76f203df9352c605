package ghost

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
)

// The snapshot file: what a node with a DataDir keeps of the partitions it
// holds (snapshot.go). It is written in one pass with bounded memory (one
// partition's entries at a time) and read in two: the checksum first, so
// that a torn or corrupt file is refused whole before anything of it is
// offered to the cluster.
//
//	magic "GHOSTSNP", format (uint16, big-endian)
//	header: taken (uvarint, the version clock when it began), wall (varint,
//	        unix ns), partitions (uvarint), node address (uvarint length, bytes)
//	per partition held: 'P', partition (uvarint), complete (byte),
//	        forgotten (uvarint), pairs (uvarint), then each pair:
//	        key (uvarint length, bytes), value (uvarint length, bytes),
//	        expires (varint, unix ns, 0 never), version (uvarint), tombstone (byte)
//	end: 'E', pairs in all (uvarint), CRC-32C of every byte before it (uint32, big-endian)

const (
	snapshotMagic  = "GHOSTSNP"
	snapshotFormat = 1
)

// errSnapshotFile: a snapshot file that cannot be read back: truncated,
// corrupt, of another format, or of another cluster shape.
var errSnapshotFile = errors.New("ghost: unusable snapshot file")

// snapshotHeader says when and where a snapshot was taken.
type snapshotHeader struct {
	taken      uint64 // the node's version clock when the snapshot began
	wall       int64  // unix nanoseconds, for people and metrics
	partitions int    // Config.PartitionCount of the node that wrote it
	addr       string // the node's advertised address
}

// snapshotPart is one partition as a snapshot holds it.
type snapshotPart struct {
	partition int
	// complete: the node held an in-sync copy (primary or backup), so a
	// key it lacks at or below forgotten is one it forgot: deleted,
	// expired, evicted or flushed. A copy still being filled says nothing
	// of the keys it lacks.
	complete  bool
	forgotten uint64
	pairs     []pairCopy // expires as unix nanoseconds on the writer's clock
}

// snapshotWriter writes a snapshot file through a checksum.
type snapshotWriter struct {
	w     *bufio.Writer
	sum   hash.Hash32
	out   io.Writer // w and sum
	buf   []byte
	pairs int64
	bytes int64
	err   error
}

func newSnapshotWriter(w io.Writer, h snapshotHeader) *snapshotWriter {
	sw := &snapshotWriter{w: bufio.NewWriterSize(w, 256<<10), sum: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
	sw.out = io.MultiWriter(sw.w, sw.sum)
	sw.buf = append(sw.buf[:0], snapshotMagic...)
	sw.buf = binary.BigEndian.AppendUint16(sw.buf, snapshotFormat)
	sw.buf = binary.AppendUvarint(sw.buf, h.taken)
	sw.buf = binary.AppendVarint(sw.buf, h.wall)
	sw.buf = binary.AppendUvarint(sw.buf, uint64(h.partitions))
	sw.buf = appendBytes(sw.buf, []byte(h.addr))
	sw.flush()
	return sw
}

// part writes partition p: its header, then its pairs.
func (sw *snapshotWriter) part(p int, complete bool, forgotten uint64, pairs []pairCopy) {
	sw.buf = append(sw.buf[:0], 'P')
	sw.buf = binary.AppendUvarint(sw.buf, uint64(p))
	sw.buf = append(sw.buf, b2byte(complete))
	sw.buf = binary.AppendUvarint(sw.buf, forgotten)
	sw.buf = binary.AppendUvarint(sw.buf, uint64(len(pairs)))
	for _, pc := range pairs {
		sw.buf = appendBytes(sw.buf, []byte(pc.key))
		sw.buf = appendBytes(sw.buf, pc.value)
		sw.buf = binary.AppendVarint(sw.buf, pc.expires)
		sw.buf = binary.AppendUvarint(sw.buf, pc.version)
		sw.buf = append(sw.buf, b2byte(pc.tombstone))
		if len(sw.buf) >= 64<<10 {
			sw.flush()
		}
	}
	sw.pairs += int64(len(pairs))
	sw.flush()
}

// finish writes the end and the checksum, and flushes.
func (sw *snapshotWriter) finish() error {
	sw.buf = append(sw.buf[:0], 'E')
	sw.buf = binary.AppendUvarint(sw.buf, uint64(sw.pairs))
	sw.flush()
	if sw.err == nil {
		sw.bytes += 4
		_, sw.err = sw.w.Write(binary.BigEndian.AppendUint32(nil, sw.sum.Sum32()))
	}
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	return sw.err
}

func (sw *snapshotWriter) flush() {
	if sw.err == nil {
		_, sw.err = sw.out.Write(sw.buf)
		sw.bytes += int64(len(sw.buf))
	}
	sw.buf = sw.buf[:0]
}

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

func b2byte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// readSnapshotFile reads the snapshot at path: its checksum over the whole
// file first, then its content. Any fault wraps errSnapshotFile.
func readSnapshotFile(path string, partitions int) (snapshotHeader, []snapshotPart, error) {
	f, err := os.Open(path)
	if err != nil {
		return snapshotHeader{}, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return snapshotHeader{}, nil, err
	}
	if err := checkSnapshotSum(f, fi.Size()); err != nil {
		return snapshotHeader{}, nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return snapshotHeader{}, nil, err
	}
	h, parts, err := decodeSnapshot(bufio.NewReaderSize(io.LimitReader(f, fi.Size()-4), 256<<10), partitions)
	if err != nil {
		return h, nil, fmt.Errorf("%w: %w", errSnapshotFile, err)
	}
	return h, parts, nil
}

// checkSnapshotSum checks the CRC-32C at the end of a file of size bytes.
func checkSnapshotSum(f io.Reader, size int64) error {
	if size < int64(len(snapshotMagic))+2+4 {
		return fmt.Errorf("%w: %d bytes, too short", errSnapshotFile, size)
	}
	sum := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	if _, err := io.CopyN(sum, f, size-4); err != nil {
		return fmt.Errorf("%w: %w", errSnapshotFile, err)
	}
	var want [4]byte
	if _, err := io.ReadFull(f, want[:]); err != nil {
		return fmt.Errorf("%w: %w", errSnapshotFile, err)
	}
	if got := sum.Sum32(); got != binary.BigEndian.Uint32(want[:]) {
		return fmt.Errorf("%w: checksum %08x, the file says %08x (truncated or corrupt)", errSnapshotFile, got, binary.BigEndian.Uint32(want[:]))
	}
	return nil
}

// snapshotReader decodes a snapshot's fields, keeping the first fault.
type snapshotReader struct {
	r   *bufio.Reader
	err error
}

func (sr *snapshotReader) uvarint() uint64 {
	if sr.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(sr.r)
	sr.err = err
	return v
}

func (sr *snapshotReader) varint() int64 {
	if sr.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(sr.r)
	sr.err = err
	return v
}

func (sr *snapshotReader) byte() byte {
	if sr.err != nil {
		return 0
	}
	b, err := sr.r.ReadByte()
	sr.err = err
	return b
}

// bytes reads a length and that many bytes, refusing more than limit.
func (sr *snapshotReader) bytes(limit int) []byte {
	n := sr.uvarint()
	if sr.err != nil {
		return nil
	}
	if n == 0 {
		return nil
	}
	if n > uint64(limit) {
		sr.err = fmt.Errorf("a field of %d bytes, limit %d", n, limit)
		return nil
	}
	if n > 64<<10 { // grow as the bytes come: a corrupt length must not allocate first
		var buf bytes.Buffer
		_, sr.err = io.CopyN(&buf, sr.r, int64(n))
		return buf.Bytes()
	}
	b := make([]byte, n)
	_, sr.err = io.ReadFull(sr.r, b)
	return b
}

// maxSnapshotValue bounds a value read from a snapshot: far above any
// MaxValueSize in use, so that a corrupt length cannot ask for gigabytes.
const maxSnapshotValue = 1 << 30

// decodeSnapshot reads a snapshot whose checksum has been checked (and is
// not in r). The file must be of this format and of a cluster of
// partitions partitions.
func decodeSnapshot(r *bufio.Reader, partitions int) (snapshotHeader, []snapshotPart, error) {
	sr := &snapshotReader{r: r}
	magic := make([]byte, len(snapshotMagic)+2)
	if _, err := io.ReadFull(r, magic); err != nil {
		return snapshotHeader{}, nil, err
	}
	if string(magic[:len(snapshotMagic)]) != snapshotMagic {
		return snapshotHeader{}, nil, errors.New("not a GhostDB snapshot")
	}
	if f := binary.BigEndian.Uint16(magic[len(snapshotMagic):]); f != snapshotFormat {
		return snapshotHeader{}, nil, fmt.Errorf("format %d; this release reads format %d", f, snapshotFormat)
	}
	h := snapshotHeader{taken: sr.uvarint(), wall: sr.varint(), partitions: int(sr.uvarint())}
	h.addr = string(sr.bytes(1024))
	if sr.err != nil {
		return h, nil, sr.err
	}
	if h.partitions != partitions {
		return h, nil, fmt.Errorf("written with %d partitions; this node has %d", h.partitions, partitions)
	}
	var parts []snapshotPart
	var total uint64
	for sr.err == nil {
		switch tag := sr.byte(); tag {
		case 'P':
			sp := snapshotPart{partition: int(sr.uvarint()), complete: sr.byte() == 1, forgotten: sr.uvarint()}
			count := sr.uvarint()
			if sr.err == nil && (sp.partition >= partitions || count > 1<<32) {
				return h, nil, fmt.Errorf("partition %d with %d pairs", sp.partition, count)
			}
			sp.pairs = make([]pairCopy, 0, min(count, 1<<16))
			for range count {
				pc := pairCopy{key: string(sr.bytes(MaxKeyLen)), value: sr.bytes(maxSnapshotValue), expires: sr.varint(), version: sr.uvarint(), tombstone: sr.byte() == 1}
				if sr.err != nil {
					break
				}
				sp.pairs = append(sp.pairs, pc)
			}
			total += uint64(len(sp.pairs))
			parts = append(parts, sp)
		case 'E':
			if n := sr.uvarint(); sr.err == nil && n != total {
				return h, nil, fmt.Errorf("the end counts %d pairs, the file holds %d", n, total)
			}
			if _, err := r.ReadByte(); err != io.EOF && sr.err == nil {
				return h, nil, errors.New("bytes after the end")
			}
			return h, parts, sr.err
		default:
			if sr.err == nil {
				return h, nil, fmt.Errorf("unknown section %q", tag)
			}
		}
	}
	if errors.Is(sr.err, io.EOF) {
		sr.err = io.ErrUnexpectedEOF
	}
	return h, nil, sr.err
}

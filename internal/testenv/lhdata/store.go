package lhdata

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/longhorn/backupstore"
	"github.com/longhorn/backupstore/util"
	"golang.org/x/sys/unix"
)

// BlockSize is the backup block size: the library's default (backupstore types.go
// DEFAULT_BLOCK_SIZE, 2 MiB), which is also Longhorn's default-backup-block-size. Volume
// sizes must be multiples of it, as Longhorn rounds every volume size up to it (CSI
// controller_server.go CreateVolume, util.RoundUpSize).
const BlockSize = backupstore.DEFAULT_BLOCK_SIZE

const (
	headFile    = "head.img"
	createdFile = "created"
	snapDir     = "snapshots"
	snapSuffix  = ".img"
)

// ErrNotFound is wrapped by errors about a volume or snapshot that does not exist.
var ErrNotFound = errors.New("not found")

// Store keeps volume data under one directory. Safe for concurrent use; operations on one
// volume are serialised.
type Store struct {
	dir string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// New returns a Store over dir (created when missing on the first write).
func New(dir string) *Store {
	return &Store{dir: dir, locks: map[string]*sync.Mutex{}}
}

// Dir is the Store's directory.
func (s *Store) Dir() string { return s.dir }

// lock serialises the operations on one volume.
func (s *Store) lock(volume string) func() {
	s.mu.Lock()
	l, ok := s.locks[volume]
	if !ok {
		l = &sync.Mutex{}
		s.locks[volume] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// checkName accepts what backupstore accepts for volume, snapshot and backup names
// (util.ValidateName), which also keeps names free of path separators.
func checkName(kind, name string) error {
	if !util.ValidateName(name) {
		return fmt.Errorf("invalid %s name %q", kind, name)
	}
	return nil
}

func (s *Store) volumeDir(volume string) string { return filepath.Join(s.dir, volume) }

// Path is the file holding the volume's current data.
func (s *Store) Path(volume string) string { return filepath.Join(s.volumeDir(volume), headFile) }

func (s *Store) snapshotPath(volume, snapshot string) string {
	return filepath.Join(s.volumeDir(volume), snapDir, snapshot+snapSuffix)
}

// Exists reports whether the volume has data here.
func (s *Store) Exists(volume string) bool {
	if checkName("volume", volume) != nil {
		return false
	}
	st, err := os.Stat(s.Path(volume))
	return err == nil && st.Mode().IsRegular()
}

// Volumes lists the volumes with data here, sorted.
func (s *Store) Volumes() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list volumes in %s: %w", s.dir, err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && s.Exists(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Create makes a volume of size bytes (a multiple of BlockSize) that reads as zeros; the
// file is sparse.
func (s *Store) Create(volume string, size int64) error {
	if err := checkName("volume", volume); err != nil {
		return err
	}
	if size <= 0 || size%BlockSize != 0 {
		return fmt.Errorf("volume %s: size %d is not a positive multiple of %d bytes (Longhorn rounds volume sizes up to it)", volume, size, BlockSize)
	}
	defer s.lock(volume)()
	if _, err := os.Stat(s.Path(volume)); err == nil {
		return fmt.Errorf("volume %s: %w", volume, fs.ErrExist)
	}
	return s.createHead(volume, size)
}

// createHead writes an empty head of size bytes; the caller holds the volume's lock.
func (s *Store) createHead(volume string, size int64) error {
	if err := os.MkdirAll(filepath.Join(s.volumeDir(volume), snapDir), 0o700); err != nil {
		return fmt.Errorf("volume %s: %w", volume, err)
	}
	f, err := os.OpenFile(s.Path(volume), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("volume %s: %w", volume, err)
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close() // the truncate error is the one to report
		return fmt.Errorf("volume %s: %w", volume, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("volume %s: %w", volume, err)
	}
	return os.WriteFile(filepath.Join(s.volumeDir(volume), createdFile), []byte(time.Now().UTC().Format(time.RFC3339)), 0o600)
}

// created is when the volume was created here (RFC 3339), "" when unknown.
func (s *Store) created(volume string) string {
	b, err := os.ReadFile(filepath.Join(s.volumeDir(volume), createdFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Size is the volume's size in bytes.
func (s *Store) Size(volume string) (int64, error) {
	if err := checkName("volume", volume); err != nil {
		return 0, err
	}
	st, err := os.Stat(s.Path(volume))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("volume %s: %w", volume, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("volume %s: %w", volume, err)
	}
	return st.Size(), nil
}

// Write writes p at off; the volume does not grow.
func (s *Store) Write(volume string, off int64, p []byte) error {
	size, err := s.Size(volume)
	if err != nil {
		return err
	}
	if off < 0 || off+int64(len(p)) > size {
		return fmt.Errorf("volume %s: write of %d bytes at %d is outside its %d bytes", volume, len(p), off, size)
	}
	defer s.lock(volume)()
	f, err := os.OpenFile(s.Path(volume), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("volume %s: %w", volume, err)
	}
	if _, err := f.WriteAt(p, off); err != nil {
		_ = f.Close() // the write error is the one to report
		return fmt.Errorf("volume %s: %w", volume, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("volume %s: %w", volume, err)
	}
	return nil
}

// ReadAll returns the volume's data.
func (s *Store) ReadAll(volume string) ([]byte, error) {
	if err := checkName("volume", volume); err != nil {
		return nil, err
	}
	defer s.lock(volume)()
	b, err := os.ReadFile(s.Path(volume))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("volume %s: %w", volume, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", volume, err)
	}
	return b, nil
}

// Delete removes the volume with its snapshots; a volume that does not exist is not an error.
func (s *Store) Delete(volume string) error {
	if err := checkName("volume", volume); err != nil {
		return err
	}
	defer s.lock(volume)()
	if err := os.RemoveAll(s.volumeDir(volume)); err != nil {
		return fmt.Errorf("volume %s: %w", volume, err)
	}
	return nil
}

// Snapshot freezes the volume's current data as snapshot. Taking a snapshot that exists
// again is an error, as in Longhorn.
func (s *Store) Snapshot(volume, snapshot string) error {
	if err := checkName("volume", volume); err != nil {
		return err
	}
	if err := checkName("snapshot", snapshot); err != nil {
		return err
	}
	defer s.lock(volume)()
	if _, err := os.Stat(s.Path(volume)); err != nil {
		return fmt.Errorf("volume %s: %w", volume, ErrNotFound)
	}
	dst := s.snapshotPath(volume, snapshot)
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("volume %s: snapshot %s: %w", volume, snapshot, fs.ErrExist)
	}
	if err := copySparse(dst, s.Path(volume)); err != nil {
		return fmt.Errorf("volume %s: snapshot %s: %w", volume, snapshot, err)
	}
	return nil
}

// HasSnapshot reports whether the volume has the snapshot.
func (s *Store) HasSnapshot(volume, snapshot string) bool {
	if checkName("volume", volume) != nil || checkName("snapshot", snapshot) != nil {
		return false
	}
	_, err := os.Stat(s.snapshotPath(volume, snapshot))
	return err == nil
}

// Snapshots lists the volume's snapshots, oldest first.
func (s *Store) Snapshots(volume string) ([]string, error) {
	if err := checkName("volume", volume); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(s.volumeDir(volume), snapDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", volume, err)
	}
	type snap struct {
		name string
		at   time.Time
	}
	var snaps []snap
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), snapSuffix)
		if !ok || e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		snaps = append(snaps, snap{name, info.ModTime()})
	}
	sort.Slice(snaps, func(i, j int) bool {
		if !snaps[i].at.Equal(snaps[j].at) {
			return snaps[i].at.Before(snaps[j].at)
		}
		return snaps[i].name < snaps[j].name
	})
	out := make([]string, len(snaps))
	for i, sn := range snaps {
		out[i] = sn.name
	}
	return out, nil
}

// DeleteSnapshot removes a snapshot; one that does not exist is not an error.
func (s *Store) DeleteSnapshot(volume, snapshot string) error {
	if err := checkName("volume", volume); err != nil {
		return err
	}
	if err := checkName("snapshot", snapshot); err != nil {
		return err
	}
	defer s.lock(volume)()
	if err := os.Remove(s.snapshotPath(volume, snapshot)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("volume %s: delete snapshot %s: %w", volume, snapshot, err)
	}
	return nil
}

// Clone creates dstVolume with exactly the data of srcVolume's snapshot, as Longhorn does
// for spec.dataSource snap://<src>/<snapshot> (types/data_source.go). An empty snapshot
// clones the source's current data (vol://<src>, for which Longhorn takes a snapshot of the
// source first).
func (s *Store) Clone(dstVolume, srcVolume, snapshot string) error {
	if err := checkName("volume", dstVolume); err != nil {
		return err
	}
	if err := checkName("volume", srcVolume); err != nil {
		return err
	}
	src := s.Path(srcVolume)
	if snapshot != "" {
		if err := checkName("snapshot", snapshot); err != nil {
			return err
		}
		src = s.snapshotPath(srcVolume, snapshot)
	}
	// Copy under the source's lock into a file of the destination's directory, then put it in
	// place under the destination's lock: never two locks at once.
	if err := os.MkdirAll(filepath.Join(s.volumeDir(dstVolume), snapDir), 0o700); err != nil {
		return fmt.Errorf("volume %s: %w", dstVolume, err)
	}
	tmp := s.Path(dstVolume) + ".clone"
	unlock := s.lock(srcVolume)
	if _, err := os.Stat(src); err != nil {
		unlock()
		what := "volume " + srcVolume
		if snapshot != "" {
			what = "snapshot " + snapshot + " of volume " + srcVolume
		}
		return fmt.Errorf("clone %s into %s: %s: %w", what, dstVolume, what, ErrNotFound)
	}
	err := copySparse(tmp, src)
	unlock()
	if err != nil {
		return fmt.Errorf("clone %s into %s: %w", srcVolume, dstVolume, err)
	}
	defer s.lock(dstVolume)()
	if _, err := os.Stat(s.Path(dstVolume)); err == nil {
		_ = os.Remove(tmp) // best effort
		return fmt.Errorf("clone %s into %s: volume %s: %w", srcVolume, dstVolume, dstVolume, fs.ErrExist)
	}
	if err := os.Rename(tmp, s.Path(dstVolume)); err != nil {
		return fmt.Errorf("clone %s into %s: %w", srcVolume, dstVolume, err)
	}
	return os.WriteFile(filepath.Join(s.volumeDir(dstVolume), createdFile), []byte(time.Now().UTC().Format(time.RFC3339)), 0o600)
}

// copySparse copies src to dst (through dst+".tmp" and a rename), writing only the data
// extents of src so holes stay holes: a mostly empty 1 GiB volume copies in no time.
func copySparse(dst, src string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close() // read-only
	st, err := in.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(tmp) // best effort
		} else {
			err = os.Rename(tmp, dst)
		}
	}()
	if err := out.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		start, end, ok, err := nextExtent(in, off, size)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		for p := start; p < end; {
			n := int(min(int64(len(buf)), end-p))
			if _, err := in.ReadAt(buf[:n], p); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if _, err := out.WriteAt(buf[:n], p); err != nil {
				return err
			}
			p += int64(n)
		}
		off = end
	}
	return nil
}

// nextExtent finds the first data extent at or after off (lseek SEEK_DATA / SEEK_HOLE);
// ok is false when only holes follow.
func nextExtent(f *os.File, off, size int64) (start, end int64, ok bool, err error) {
	fd := int(f.Fd())
	start, err = unix.Seek(fd, off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("seek data in %s: %w", f.Name(), err)
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, false, fmt.Errorf("seek hole in %s: %w", f.Name(), err)
	}
	return start, min(end, size), start < size, nil
}

// hasData reports whether [off, end) of f holds any data extent.
func hasData(f *os.File, off, end int64) (bool, error) {
	start, _, ok, err := nextExtent(f, off, end)
	if err != nil || !ok {
		return false, err
	}
	return start < end, nil
}

// Allocated is the number of bytes a snapshot (or, for snapshot "", the volume) holds on
// disk: what Longhorn reports as a snapshot's size.
func (s *Store) Allocated(volume, snapshot string) int64 {
	p := s.Path(volume)
	if snapshot != "" {
		p = s.snapshotPath(volume, snapshot)
	}
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return min(sys.Blocks*512, st.Size())
	}
	return st.Size()
}

// Checksum is the SHA-256 of the volume's data, holes read as zeros.
func (s *Store) Checksum(volume string) (string, error) {
	if err := checkName("volume", volume); err != nil {
		return "", err
	}
	defer s.lock(volume)()
	f, err := os.Open(s.Path(volume))
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("volume %s: %w", volume, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("volume %s: %w", volume, err)
	}
	defer f.Close() // read-only
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("volume %s: %w", volume, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

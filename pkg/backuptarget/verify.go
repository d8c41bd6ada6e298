package backuptarget

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"sync"

	"github.com/longhorn/backupstore"
	"github.com/longhorn/backupstore/util"
)

// VerifyOptions select what Verify checks.
type VerifyOptions struct {
	// ReadData downloads every block, decompresses it and checks it against its checksum
	// (its name), as a restore does. Without it, blocks are only checked to exist and to
	// be non-empty (one HEAD each).
	ReadData bool
	// Volumes limits the check to these backup volumes (default: all).
	Volumes []string
	// Concurrency is the number of blocks checked at once (default 8).
	Concurrency int
}

// ProblemKind classifies a Problem.
type ProblemKind string

// Problem kinds.
const (
	ProblemVolumeMissing   ProblemKind = "volume-missing"   // a volume asked for is not in the target
	ProblemVolumeConfig    ProblemKind = "volume-config"    // volume.cfg missing or not parseable
	ProblemBackupConfig    ProblemKind = "backup-config"    // a backup config missing or not parseable
	ProblemBlockInvalid    ProblemKind = "block-invalid"    // a backup names a block by an invalid checksum
	ProblemBlockMissing    ProblemKind = "block-missing"    // a block a backup references does not exist
	ProblemBlockEmpty      ProblemKind = "block-empty"      // a block is stored with size 0
	ProblemBlockUnreadable ProblemKind = "block-unreadable" // a block could not be checked or read
	ProblemBlockCorrupt    ProblemKind = "block-corrupt"    // a block's content does not match its checksum
)

// Problem is one thing wrong with a backup target. Volume is always set; Backup when the
// problem belongs to one backup; Block (the block's checksum) for block problems.
type Problem struct {
	Volume string      `json:"volume"`
	Backup string      `json:"backup,omitempty"`
	Block  string      `json:"block,omitempty"`
	Path   string      `json:"path,omitempty"`
	Kind   ProblemKind `json:"kind"`
	Detail string      `json:"detail"`
}

func (p Problem) String() string {
	s := "volume " + p.Volume
	if p.Backup != "" {
		s += " backup " + p.Backup
	}
	if p.Block != "" {
		s += " block " + p.Block
	}
	s += ": " + string(p.Kind) + ": " + p.Detail
	if p.Path != "" {
		s += " (" + p.Path + ")"
	}
	return s
}

// Report is the outcome of Verify.
type Report struct {
	Target   string `json:"target"`
	ReadData bool   `json:"readData"`
	// Volumes, Backups and Blocks count what was checked; a block shared by several
	// backups of a volume is checked, and counted, once. BytesRead counts the stored
	// (compressed) bytes of the blocks read with ReadData.
	Volumes   int       `json:"volumes"`
	Backups   int       `json:"backups"`
	Blocks    int       `json:"blocks"`
	BytesRead int64     `json:"bytesRead"`
	Problems  []Problem `json:"problems"`
	// Listing is what was read, for reports per claim.
	Listing *Listing `json:"-"`
}

// OK reports whether Verify found nothing wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks that every backup of target (or of the volumes named in opts) can be
// restored: volume.cfg and every backup config parse, and every block a backup references
// exists with a non-zero size; with ReadData, every block also decompresses to data that
// matches its checksum. It returns a report of every problem; an error means the target
// itself could not be read.
func Verify(ctx context.Context, target string, creds Credentials, opts VerifyOptions) (*Report, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	var r *Report
	err := WithEnv(creds, func() error {
		driver, err := openDriver(target)
		if err != nil {
			return err
		}
		l, problems, err := scan(ctx, driver, target, opts.Volumes, true)
		if err != nil {
			return err
		}
		r = &Report{Target: l.Target, ReadData: opts.ReadData, Listing: l, Problems: problems}
		for _, v := range l.Volumes {
			r.Volumes++
			r.Backups += v.configs
			if err := verifyBlocks(ctx, driver, v, opts, r); err != nil {
				return err
			}
			for _, b := range v.Backups {
				b.blocks = nil
			}
		}
		// Config problems come from the scan, block problems per volume: group them by volume.
		sort.SliceStable(r.Problems, func(i, j int) bool { return r.Problems[i].Volume < r.Problems[j].Volume })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// blockCheck is the outcome of checking one block.
type blockCheck struct {
	checksum, compression string
	path                  string
	kind                  ProblemKind // "" when the block is fine
	detail                string
	read                  int64
}

// verifyBlocks checks every distinct block of the volume's backups once and reports a
// problem for each backup that references a bad block (each such backup is unrestorable).
func verifyBlocks(ctx context.Context, driver backupstore.BackupStoreDriver, v *Volume, opts VerifyOptions, r *Report) error {
	var order []string
	checks := map[string]*blockCheck{}
	for _, b := range v.Backups {
		for _, m := range b.blocks {
			if _, ok := checks[m.BlockChecksum]; !ok {
				checks[m.BlockChecksum] = &blockCheck{checksum: m.BlockChecksum, compression: b.Compression}
				order = append(order, m.BlockChecksum)
			}
		}
	}

	work := make(chan *blockCheck)
	var wg sync.WaitGroup
	for range min(opts.Concurrency, max(len(order), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				checkBlock(ctx, driver, v.Name, c, opts.ReadData)
			}
		}()
	}
feed:
	for _, sum := range order {
		select {
		case work <- checks[sum]:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}

	r.Blocks += len(order)
	for _, sum := range order {
		r.BytesRead += checks[sum].read
	}
	for _, b := range v.Backups {
		reported := map[string]bool{}
		for _, m := range b.blocks {
			c := checks[m.BlockChecksum]
			if c.kind == "" || reported[c.checksum] {
				continue
			}
			reported[c.checksum] = true
			r.Problems = append(r.Problems, Problem{Volume: v.Name, Backup: b.Name, Block: c.checksum, Path: c.path, Kind: c.kind, Detail: c.detail})
		}
	}
	return nil
}

// checkBlock checks one block: it exists with a size > 0 and, with readData, decompresses
// to data matching its checksum.
func checkBlock(ctx context.Context, driver backupstore.BackupStoreDriver, volume string, c *blockCheck, readData bool) {
	p, err := blockPath(volume, c.checksum)
	if err != nil {
		c.kind, c.detail = ProblemBlockInvalid, err.Error()
		return
	}
	c.path = p
	size := driver.FileSize(p)
	switch {
	case size < 0:
		// FileSize answers -1 for any failed HEAD (s3/s3.go); a listing tells a block that is
		// gone from one that could not be asked about.
		names, err := driver.List(path.Dir(p))
		switch {
		case err != nil:
			c.kind, c.detail = ProblemBlockUnreadable, "cannot check the block: "+explain(err).Error()
		case slices.Contains(names, path.Base(p)):
			c.kind, c.detail = ProblemBlockUnreadable, "the block is listed but cannot be read (HEAD failed)"
		default:
			c.kind, c.detail = ProblemBlockMissing, "the block does not exist"
		}
		return
	case size == 0:
		c.kind, c.detail = ProblemBlockEmpty, "the block is stored with size 0"
		return
	}
	if !readData {
		return
	}
	c.read = size
	if kind, detail := readBlock(ctx, driver, p, c.compression, c.checksum); kind != "" {
		c.kind, c.detail = kind, detail
	}
}

// errSettled cancels the context of one DecompressAndVerifyWithFallback call once a retry
// cannot change the outcome.
var errSettled = errors.New("the outcome of the block read is settled")

// readBlock reads one block with backupstore.DecompressAndVerifyWithFallback, as a restore
// does (deltablock.go restoreBlockToFile). That function retries a failed attempt with a
// backoff of up to 5 minutes (util.go retryWithBackoff) unless the checksum mismatched; it
// checks its context only between attempts. A retry helps against a failed download but
// not against data that was read and is wrong, nor against a refusal: so the read goes
// through settlingDriver, which cancels the context once the object was read or refused,
// and the attempt's outcome stands.
func readBlock(ctx context.Context, driver backupstore.BackupStoreDriver, blkPath, compression, checksum string) (ProblemKind, string) {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sd := &settlingDriver{BackupStoreDriver: driver, settle: cancel}
	_, err := backupstore.DecompressAndVerifyWithFallback(cctx, sd, blkPath, compression, checksum)
	if err == nil {
		return "", ""
	}
	if ctx.Err() != nil {
		return ProblemBlockUnreadable, ctx.Err().Error()
	}
	if data, read := sd.result(); read {
		// The content is what it is: say why it is wrong, with the library's own check.
		if _, verr := util.DecompressAndVerify(compression, bytes.NewReader(data), checksum); verr != nil {
			return ProblemBlockCorrupt, fmt.Sprintf("the block's content does not match its checksum (%s-compressed): %v", compression, verr)
		}
		return ProblemBlockCorrupt, "the block's content does not match its checksum: " + err.Error()
	}
	if rerr := sd.readErr(); rerr != nil {
		err = rerr
	}
	return ProblemBlockUnreadable, "cannot read the block: " + explain(err).Error()
}

// settlingDriver is the backup store driver with a Read that records what it read and
// settles the outcome (see readBlock).
type settlingDriver struct {
	backupstore.BackupStoreDriver
	settle func(error)

	mu   sync.Mutex
	data []byte
	read bool
	err  error
}

func (d *settlingDriver) Read(src string) (io.ReadCloser, error) {
	rc, err := d.BackupStoreDriver.Read(src)
	if err == nil {
		var data []byte
		data, err = io.ReadAll(rc)
		_ = rc.Close()
		if err == nil {
			d.mu.Lock()
			d.data, d.read, d.err = data, true, nil
			d.mu.Unlock()
			d.settle(errSettled)
			return io.NopCloser(bytes.NewReader(data)), nil
		}
	}
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
	// A refusal (a 4xx with an S3 error code) will not change on retry; a failed download
	// might, so that is left to backupstore's backoff.
	if cause, _ := classify(err); cause != CauseNone && cause != CauseUnreachable {
		d.settle(errSettled)
	}
	return nil, err
}

func (d *settlingDriver) result() ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.data, d.read
}

func (d *settlingDriver) readErr() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

package image

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"github.com/docker/go-units"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/image/layerfs"
)

// Limits are the disk budget of imports: agentd's image-max-size and
// image-store-max-size settings. Sizes are unpacked sizes as chargedSize
// counts them. Whatever the limits, an import also stops before it leaves the
// store's filesystem with less free than its reserve (see reserve).
type Limits struct {
	// MaxImageSize is the largest unpacked size of one image, the layers it
	// shares with images already in the store included; 0 means no limit.
	// The blobs an OCI archive holds are copied aside while it is imported,
	// and they may not exceed it together either.
	MaxImageSize int64
	// MaxStoreSize is the largest unpacked size of all the store's layers
	// together (a layer shared by images counts once); 0 means no limit.
	MaxStoreSize int64
}

// DefaultLimits are agentd's defaults: 32 GiB per image, no store limit.
var DefaultLimits = Limits{MaxImageSize: 32 << 30}

// ErrTooLarge is matched (errors.Is) by the *LimitError of an import that
// would exceed a limit or eat into the filesystem's reserve.
var ErrTooLarge = errors.New("image too large")

// blockSize is the unit sizes are rounded up to, and what every entry of a
// layer costs at least.
const blockSize = 4096

// chargedSize is what a layer entry of size bytes of data (a regular file's
// logical size, holes included; 0 for other entries) counts for: its size
// rounded up to whole 4 KiB blocks, one block at least. So a file counts for
// about what it takes on disk when written out (as the vfs driver's copy and
// overlayfs' copy-up do), and an empty file, a directory or a link for its
// inode and directory entry: a layer of millions of empty files is as large
// as it is costly.
func chargedSize(size int64) int64 {
	if size <= blockSize {
		return blockSize
	}
	if size > (1<<63-1)-blockSize {
		return 1<<63 - 1
	}
	return (size + blockSize - 1) / blockSize * blockSize
}

// exceeded says which limit, if any, an image of imageSize bytes in a store
// of storeSize bytes (that image included) goes over.
func exceeded(l Limits, imageSize, storeSize int64) (setting string, limit int64) {
	switch {
	case l.MaxImageSize > 0 && imageSize > l.MaxImageSize:
		return "image-max-size", l.MaxImageSize
	case l.MaxStoreSize > 0 && storeSize > l.MaxStoreSize:
		return "image-store-max-size", l.MaxStoreSize
	}
	return "", 0
}

// The free-space reserve: an import never leaves the store's filesystem with
// less than 5% of its space (but 1 GiB is always enough) or 5% of its inodes
// free, as kubelet's default eviction thresholds keep nodefs.inodesFree above
// 5%. It is counted from the space available to unprivileged users (df's
// Avail), so the blocks ext4 keeps for root stay untouched on top of it.
const (
	reservePercent  = 5
	maxReserveBytes = 1 << 30
)

// reserve is what an import leaves free on a filesystem statfs describes.
func reserve(st *unix.Statfs_t) (bytes, inodes uint64) {
	bytes = min(st.Blocks*uint64(st.Bsize)*reservePercent/100, maxReserveBytes)
	inodes = st.Files * reservePercent / 100 // 0 where the filesystem has no inode count (btrfs)
	return bytes, inodes
}

// belowReserve returns a *LimitError when st shows less free than reserve.
func belowReserve(st *unix.Statfs_t) error {
	wantBytes, wantInodes := reserve(st)
	if avail := st.Bavail * uint64(st.Bsize); avail < wantBytes {
		return &LimitError{Limit: int64(wantBytes), InUse: int64(avail)}
	}
	if st.Files > 0 && st.Ffree < wantInodes {
		return &LimitError{Limit: int64(wantInodes), InUse: int64(st.Ffree), Inodes: true}
	}
	return nil
}

// LimitError is the error of an import that stopped at a limit. Nothing of
// the import is left in the store.
type LimitError struct {
	// Setting is the limit: "image-max-size" or "image-store-max-size", or
	// "" when the filesystem would have been left with less free than its
	// reserve.
	Setting string
	// Limit is the setting's value, or the reserve (bytes, or inodes when
	// Inodes is set).
	Limit int64
	// InUse is what the store's layers took before the import
	// (image-store-max-size), or what was free (the reserve).
	InUse  int64
	Inodes bool
	// Image names the image (its names, or where the archive lists it);
	// empty while the archive's blobs were being copied aside.
	Image   string
	Archive string
	Layer   string // "layer 2 of 3, sha256:…", if one was being unpacked
	Entry   string // the archive or layer entry being written, if any
	Dir     string // the store
}

func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }

func (e *LimitError) Error() string {
	var b strings.Builder
	what := "image " + e.Image
	if e.Image == "" {
		what = "the image archive"
	}
	if e.Archive != "" {
		what += " " + map[bool]string{true: "", false: "from "}[e.Image == ""] + e.Archive
	}
	size := func(n int64) string { return units.BytesSize(float64(n)) }
	switch e.Setting {
	case "image-max-size":
		if e.Image == "" {
			fmt.Fprintf(&b, "%s holds more than image-max-size (%s) of blobs", what, size(e.Limit))
		} else {
			fmt.Fprintf(&b, "%s is larger than image-max-size (%s) unpacked", what, size(e.Limit))
		}
	case "image-store-max-size":
		fmt.Fprintf(&b, "%s does not fit in image-store-max-size (%s): the store's images take %s already", what, size(e.Limit), size(e.InUse))
	default:
		free := fmt.Sprintf("%s of disk space", size(e.Limit))
		if e.Inodes {
			free = fmt.Sprintf("%d inodes (%d%%)", e.Limit, reservePercent)
		}
		fmt.Fprintf(&b, "importing %s would leave less than %s free on the filesystem of the image store %s, the reserve agentd keeps for the host", what, free, e.Dir)
	}
	entry := e.Entry
	if len(entry) > 100 { // the archive's to choose: up to a megabyte
		entry = entry[:50] + "..." + entry[len(entry)-47:]
	}
	switch {
	case e.Entry != "" && e.Layer != "":
		fmt.Fprintf(&b, " (stopped at entry %q of %s)", entry, e.Layer)
	case e.Entry != "":
		fmt.Fprintf(&b, " (stopped at entry %q)", entry)
	case e.Layer != "":
		fmt.Fprintf(&b, " (stopped at %s)", e.Layer)
	}
	b.WriteString("; nothing was imported. ")
	switch e.Setting {
	case "image-max-size":
		b.WriteString("If you trust the image, raise agentd's image-max-size setting (0 means no limit)")
	case "image-store-max-size":
		b.WriteString("Remove images you do not need (agentctl image rm), or raise agentd's image-store-max-size setting (0 means no limit)")
	default:
		b.WriteString("Free disk space first (agentctl image rm removes images)")
	}
	return b.String()
}

// budget is what one import may still unpack. It is charged entry by entry,
// before anything of the entry is written.
type budget struct {
	mu     sync.Mutex // guards image and store while layers unpack in parallel
	limits Limits
	image  int64 // the image being imported: its layers in the store, and what was unpacked of it
	store  int64 // the store's layers, and what this import unpacked
	// storeBefore is what the store's layers took when the import began.
	storeBefore int64
}

// charge adds n bytes to the image and to the store.
func (b *budget) charge(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.image = addSat(b.image, n)
	b.store = addSat(b.store, n)
	return b.check()
}

// chargeImage adds n bytes to the image only: a layer the store already has.
func (b *budget) chargeImage(n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.image = addSat(b.image, n)
	return b.check()
}

// addSat adds two sizes of 0 or more, stopping at the largest int64: a
// sparse entry may claim an exabyte, and must not wrap a count to below a
// limit.
func addSat(a, b int64) int64 {
	if a > (1<<63-1)-b {
		return 1<<63 - 1
	}
	return a + b
}

func (b *budget) check() error {
	if setting, limit := exceeded(b.limits, b.image, b.store); setting != "" {
		return &LimitError{Setting: setting, Limit: limit, InUse: b.storeBefore}
	}
	return nil
}

// maxCheckEvery is how many bytes a meter lets be written between two looks
// at the filesystem's free space; it looks more often on small filesystems.
const maxCheckEvery = 16 << 20

// meter charges what an import writes to its budget and keeps the store's
// filesystem above its reserve. It is the layerfs.Meter of every layer of one
// import, and also meters the copy of an archive's blobs.
type meter struct {
	b      *budget
	dir    string // the store's tmp/, where everything is written first
	statfs func(path string, st *unix.Statfs_t) error
	// unchecked is what was written since the filesystem was last looked
	// at (an entry counts as one block); checkEvery the most it may be.
	unchecked, checkEvery int64
	// peers is how many meters (this one included) write at once: each
	// takes its share of the quarter of the reserve between two looks.
	peers int64
	layer int64  // charged to the layer being unpacked
	entry string // the entry being written
}

var _ layerfs.Meter = (*meter)(nil)

func newMeter(b *budget, dir string, statfs func(string, *unix.Statfs_t) error) *meter {
	// The first entry looks at once: a filesystem below its reserve
	// refuses an import before it writes anything.
	return &meter{b: b, dir: dir, statfs: statfs, unchecked: maxCheckEvery, checkEvery: maxCheckEvery, peers: 1}
}

// Entry implements layerfs.Meter.
func (m *meter) Entry(name string, size int64) error {
	m.entry = name
	n := chargedSize(size)
	if err := m.b.charge(n); err != nil {
		return m.fail(err)
	}
	m.layer += n
	m.unchecked += blockSize
	return m.checkFree()
}

// Wrote implements layerfs.Meter.
func (m *meter) Wrote(n int64) error {
	m.unchecked += n
	return m.checkFree()
}

func (m *meter) checkFree() error {
	if m.unchecked < m.checkEvery {
		return nil
	}
	m.unchecked = 0
	var st unix.Statfs_t
	if err := m.statfs(m.dir, &st); err != nil {
		return fmt.Errorf("looking at the free space of %s: %w", m.dir, err)
	}
	// A quarter of the reserve at most between two looks, so that a write
	// between them cannot go through it.
	bytes, _ := reserve(&st)
	m.checkEvery = min(max(int64(bytes)/4/max(m.peers, 1), 64<<10), maxCheckEvery)
	if err := belowReserve(&st); err != nil {
		return m.fail(err)
	}
	return nil
}

// fail fills in what the meter knows of a *LimitError.
func (m *meter) fail(err error) error {
	var le *LimitError
	if errors.As(err, &le) {
		le.Entry = m.entry
	}
	return err
}

// fork returns a meter for one of peers layers unpacked at the same time,
// charging m's budget. It looks at the free space at its first entry.
func (m *meter) fork(peers int) *meter {
	return &meter{b: m.b, dir: m.dir, statfs: m.statfs, unchecked: maxCheckEvery, checkEvery: maxCheckEvery, peers: int64(max(peers, 1))}
}

// startLayer resets the per-layer count before a layer is unpacked.
func (m *meter) startLayer() { m.layer, m.entry = 0, "" }

// copy copies src to dst as data of the current entry, telling the meter of
// every write.
func (m *meter) copy(dst io.Writer, src io.Reader) error {
	buf := make([]byte, 128<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			if werr := m.Wrote(int64(n)); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// discard reads r to its end, charging what it reads to the budget (not to
// the layer: it is not written). It is the data after the end of a layer's
// tar archive, read only to check the layer's digest: a few blocks of
// padding normally, and no way to make the store read forever.
func (m *meter) discard(r io.Reader) error {
	buf := make([]byte, 128<<10)
	m.entry = "(data after the end of the tar archive)"
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if cerr := m.b.charge(int64(n)); cerr != nil {
				return m.fail(cerr)
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// measureLayer counts the layer directory dir as its unpacking was charged
// (chargedSize of every entry; a file with several links once, its other
// links as empty entries), for the layers of a store written before sizes
// were recorded.
func measureLayer(dir string) (int64, error) {
	var total int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		var size int64
		if st.Mode&unix.S_IFMT == unix.S_IFREG && !seen[st.Ino] {
			size = st.Size
			if st.Nlink > 1 {
				seen[st.Ino] = true
			}
		}
		total += chargedSize(size)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measuring layer %s: %w", dir, err)
	}
	return total, nil
}

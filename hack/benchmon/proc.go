package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// mapping is one group of /proc/<pid>/smaps entries.
type mapping struct {
	Name                       string
	Count                      int
	Size, Rss, Pss, Anon, Priv int64 // kB
}

// smapsByMapping groups /proc/<pid>/smaps by mapping: the file or [name]; anonymous
// mappings without a name are listed one by one with their address and size.
func smapsByMapping(pid int) ([]mapping, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	groups := map[string]*mapping{}
	var cur *mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a header: range perms offset dev inode [path]
			name := ""
			if len(fields) >= 6 {
				name = strings.Join(fields[5:], " ")
			}
			perms := ""
			if len(fields) > 1 {
				perms = fields[1]
			}
			if name == "" {
				name = "anon " + perms + " @" + fields[0]
			} else {
				name += " (" + perms + ")"
			}
			cur = groups[name]
			if cur == nil {
				cur = &mapping{Name: name}
				groups[name] = cur
			}
			cur.Count++
			continue
		}
		if cur == nil {
			continue
		}
		name, v, ok := benchutil.KBField(fields)
		if !ok {
			continue
		}
		switch name {
		case "Size:":
			cur.Size += v
		case "Rss:":
			cur.Rss += v
		case "Pss:":
			cur.Pss += v
		case "Anonymous:":
			cur.Anon += v
		case "Private_Clean:", "Private_Dirty:":
			cur.Priv += v
		}
	}
	out := make([]mapping, 0, len(groups))
	for _, m := range groups {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pss != out[j].Pss {
			return out[i].Pss > out[j].Pss
		}
		return out[i].Name < out[j].Name
	})
	return out, sc.Err()
}

// logCount counts what a CRI / k8s-file log holds: records, and content bytes
// with each F record's newline (P records are parts of a longer line).
func logCount(path string) (records, content int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return records, content, fmt.Errorf("%s: record longer than 1 MiB", path)
		}
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				return records, content, nil // a record being written
			}
			records++
			// <timestamp> <stream> <P|F> <content>\n
			rest := line
			for i := 0; i < 3; i++ {
				sp := bytes.IndexByte(rest, ' ')
				if sp < 0 {
					return records, content, fmt.Errorf("%s: malformed record %q", path, clipBytes(line))
				}
				if i == 2 {
					break
				}
				rest = rest[sp+1:]
			}
			tag := rest[:bytes.IndexByte(rest, ' ')]
			body := len(rest) - len(tag) - 2 // without the tag, its space and the record's newline
			switch string(tag) {
			case "F":
				content += int64(body) + 1
			case "P":
				content += int64(body)
			default:
				return records, content, fmt.Errorf("%s: record tag %q", path, tag)
			}
		}
		if err == io.EOF {
			return records, content, nil
		}
		if err != nil {
			return records, content, err
		}
	}
}

func clipBytes(b []byte) []byte {
	if len(b) > 120 {
		return b[:120]
	}
	return b
}

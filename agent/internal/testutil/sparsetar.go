package testutil

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// SparseChunk is data at an offset of a sparse file; the rest of the file is holes.
type SparseChunk struct {
	Offset int64
	Data   []byte
}

// SparseTarEntry returns the tar bytes of a sparse regular file of size bytes in
// the PAX GNU sparse format 0.1 (a PAX header with GNU.sparse.size, numblocks and
// map, then the data of the chunks only), which archive/tar reads but cannot
// write. Put it between the entries of an archive: Flush the tar.Writer, write
// these bytes to its underlying writer, carry on with the tar.Writer.
func SparseTarEntry(name string, mode, size int64, chunks ...SparseChunk) []byte {
	var sparseMap []string
	var data []byte
	for _, c := range chunks {
		sparseMap = append(sparseMap, strconv.FormatInt(c.Offset, 10), strconv.Itoa(len(c.Data)))
		data = append(data, c.Data...)
	}
	records := paxRecord("GNU.sparse.size", strconv.FormatInt(size, 10)) +
		paxRecord("GNU.sparse.numblocks", strconv.Itoa(len(chunks))) +
		paxRecord("GNU.sparse.map", strings.Join(sparseMap, ","))

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// The PAX header is written as a regular file and retyped: tar.Writer
	// refuses to write a TypeXHeader itself.
	must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "PaxHeaders/" + name, Mode: 0o644, Size: int64(len(records)), Format: tar.FormatUSTAR}))
	_, err := tw.Write([]byte(records))
	must(err)
	must(tw.Flush())
	hdr := buf.Bytes()[:512]
	hdr[156] = tar.TypeXHeader
	copy(hdr[148:156], "        ")
	sum := 0
	for _, b := range hdr {
		sum += int(b)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))

	must(tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), Format: tar.FormatUSTAR}))
	_, err = tw.Write(data)
	must(err)
	must(tw.Flush())
	return buf.Bytes()
}

// paxRecord is one "LEN key=value\n" record; LEN counts itself.
func paxRecord(k, v string) string {
	body := " " + k + "=" + v + "\n"
	n := len(body) + 1
	for len(strconv.Itoa(n))+len(body) != n {
		n++
	}
	return strconv.Itoa(n) + body
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

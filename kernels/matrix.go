package kernels

import (
	"fmt"

	"github.com/specd-dev/specd/ggml"
)

// Matrix is a row-major weight matrix in GGUF layout: Rows rows of Cols elements, each row
// Type.RowBytes(Cols) bytes, so a row of a quantized type is a whole number of blocks.
// Data holds exactly Rows·RowBytes bytes; it is typically a slice of a memory-mapped
// GGUF file, which the Matrix borrows and never writes.
type Matrix struct {
	Type       ggml.Type
	Rows, Cols int
	Data       []byte

	packed   *hugeMem   // Data laid out for packedBy's kernels (see Pack)
	packedBy *kernelSet // nil when not packed
}

// NewMatrix wraps data as a rows×cols matrix of type t. It returns an error when t is not
// supported, cols is not a multiple of t's block size, or len(data) is not exactly
// rows·t.RowBytes(cols).
func NewMatrix(t ggml.Type, rows, cols int, data []byte) (*Matrix, error) {
	if rows < 0 || cols < 0 {
		return nil, fmt.Errorf("matrix %d×%d: negative dimension", rows, cols)
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		return nil, fmt.Errorf("matrix %d×%d: %w", rows, cols, err)
	}
	if len(data) != rows*rb {
		return nil, fmt.Errorf("matrix %d×%d of %v: want %d bytes, have %d", rows, cols, t, rows*rb, len(data))
	}
	return &Matrix{Type: t, Rows: rows, Cols: cols, Data: data}, nil
}

// RowBytes returns the size in bytes of one row of m.
func (m *Matrix) RowBytes() int {
	return m.Cols / m.Type.BlockSize() * m.Type.BlockBytes()
}

// Row dequantizes row r into dst[:m.Cols], as an embedding lookup does. It panics if r is
// out of range or dst is shorter than m.Cols.
func (m *Matrix) Row(dst []float32, r int) {
	if r < 0 || r >= m.Rows {
		panic(fmt.Sprintf("kernels: row %d of a %d-row matrix", r, m.Rows))
	}
	rb := m.RowBytes()
	if err := Dequantize(m.Type, dst[:m.Cols], m.Data[r*rb:(r+1)*rb]); err != nil {
		panic("kernels: " + err.Error()) // sizes were validated by NewMatrix
	}
}

// Convert re-encodes m as type to, row by row through float32 (Dequantize then Quantize),
// as loading with --quant does. The result owns fresh memory. It returns an error when m.Cols
// is not a multiple of the block size of to, or to is not supported.
func Convert(m *Matrix, to ggml.Type) (*Matrix, error) {
	rb, err := to.RowBytes(m.Cols)
	if err != nil {
		return nil, fmt.Errorf("convert %d×%d %v to %v: %w", m.Rows, m.Cols, m.Type, to, err)
	}
	out := &Matrix{Type: to, Rows: m.Rows, Cols: m.Cols, Data: make([]byte, m.Rows*rb)}
	row := make([]float32, m.Cols)
	for r := range m.Rows {
		m.Row(row, r)
		if err := Quantize(to, out.Data[r*rb:(r+1)*rb], row); err != nil {
			return nil, fmt.Errorf("convert %v to %v: %w", m.Type, to, err)
		}
	}
	return out, nil
}

//! Tensors of labels.
//!
//! A [`LabelTensor`] holds the labels of one modulus `p` for every element
//! of a row-major tensor, **all digits in one `Vec<u16>`**: element `i`
//! owns `digits[i·n .. (i+1)·n]` with `n = p.digits()`. This is the layout
//! the linear kernels run over (a matrix of `elements × n` digits) and the
//! one a GPU kernel can take as is; no label is ever allocated on its own.
//! A [`CrtTensor`] is one `LabelTensor` per residue of a [`CrtBase`].
//!
//! The garbler's tensors hold zero labels, which are secret: every tensor
//! zeroises its digits on drop (the evaluator's labels are not secret, but
//! one rule for both keeps the type simple).

use anyhow::{Context, Result, bail, ensure};
use dash_core::{Block, Bundle, CrtBase, Label, Modulus};
use zeroize::Zeroize;

/// Row-major strides of a shape.
pub fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Labels of one modulus for every element of a tensor, stored contiguously.
pub struct LabelTensor {
    modulus: Modulus,
    shape: Vec<usize>,
    digits: Vec<u16>,
}

impl Drop for LabelTensor {
    fn drop(&mut self) {
        self.digits.zeroize();
    }
}

impl Clone for LabelTensor {
    fn clone(&self) -> Self {
        LabelTensor { modulus: self.modulus, shape: self.shape.clone(), digits: self.digits.clone() }
    }
}

impl core::fmt::Debug for LabelTensor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "LabelTensor(p={}, shape={:?}, <digits redacted>)", self.modulus.value(), self.shape)
    }
}

impl LabelTensor {
    /// A tensor of all-zero labels (the label of the constant 0 on both sides).
    pub fn zeros(modulus: Modulus, shape: &[usize]) -> LabelTensor {
        let len: usize = shape.iter().product();
        LabelTensor { modulus, shape: shape.to_vec(), digits: vec![0; len * modulus.digits()] }
    }

    /// A tensor from its digit buffer (`elements × modulus.digits()`, every
    /// digit below `p`).
    pub fn from_digits(modulus: Modulus, shape: &[usize], digits: Vec<u16>) -> Result<LabelTensor> {
        let len: usize = shape.iter().product();
        let t = LabelTensor { modulus, shape: shape.to_vec(), digits };
        ensure!(t.digits.len() == len * modulus.digits(), "digit buffer does not match shape {shape:?}");
        ensure!(t.digits.iter().all(|&d| d < modulus.value()), "a digit is not reduced mod {}", modulus.value());
        Ok(t)
    }

    /// The modulus of every label.
    pub fn modulus(&self) -> Modulus {
        self.modulus
    }

    /// Digits per label (`modulus.digits()`).
    pub fn label_len(&self) -> usize {
        self.modulus.digits()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements (labels).
    pub fn len(&self) -> usize {
        self.digits.len() / self.label_len()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.digits.is_empty()
    }

    /// All digits, element after element.
    pub fn digits(&self) -> &[u16] {
        &self.digits
    }

    /// All digits, mutable. Callers keep every digit below `p`.
    pub fn digits_mut(&mut self) -> &mut [u16] {
        &mut self.digits
    }

    /// The digits of element `i` (flat index).
    pub fn label_digits(&self, i: usize) -> &[u16] {
        let n = self.label_len();
        &self.digits[i * n..(i + 1) * n]
    }

    /// The digits of element `i`, mutable.
    pub fn label_digits_mut(&mut self, i: usize) -> &mut [u16] {
        let n = self.label_len();
        &mut self.digits[i * n..(i + 1) * n]
    }

    /// Element `i` as a [`Label`] (a copy on the stack).
    pub fn get(&self, i: usize) -> Result<Label> {
        ensure!(i < self.len(), "element {i} out of range ({} elements)", self.len());
        Ok(Label::from_digits(self.modulus, self.label_digits(i))?)
    }

    /// Stores `label` as element `i`.
    pub fn set(&mut self, i: usize, label: &Label) -> Result<()> {
        ensure!(i < self.len(), "element {i} out of range ({} elements)", self.len());
        ensure!(
            label.modulus() == self.modulus,
            "label modulus {} in a tensor of {}",
            label.modulus().value(),
            self.modulus.value()
        );
        self.label_digits_mut(i).copy_from_slice(label.digits());
        Ok(())
    }

    /// The flat index of a multi-index.
    pub fn index(&self, idx: &[usize]) -> Result<usize> {
        ensure!(idx.len() == self.shape.len(), "index {idx:?} for shape {:?}", self.shape);
        let mut flat = 0;
        for (&i, &s) in idx.iter().zip(&self.shape) {
            ensure!(i < s, "index {idx:?} out of shape {:?}", self.shape);
            flat = flat * s + i;
        }
        Ok(flat)
    }

    /// The same labels under another shape with as many elements.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<()> {
        ensure!(shape.iter().product::<usize>() == self.len(), "cannot reshape {:?} to {shape:?}", self.shape);
        self.shape = shape.to_vec();
        Ok(())
    }

    /// A strided view of the whole tensor.
    pub fn view(&self) -> TensorView<'_> {
        TensorView { tensor: self, offset: 0, shape: self.shape.clone(), strides: strides_of(&self.shape) }
    }
}

/// A strided window onto a [`LabelTensor`] (no copy): an offset, a shape
/// and an element stride per axis.
#[derive(Clone, Debug)]
pub struct TensorView<'a> {
    tensor: &'a LabelTensor,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<usize>,
}

impl<'a> TensorView<'a> {
    /// The view's shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements `start, start + step, …` (`len` of them) along `axis`.
    pub fn slice(&self, axis: usize, start: usize, len: usize, step: usize) -> Result<TensorView<'a>> {
        ensure!(axis < self.shape.len() && step >= 1, "bad slice of axis {axis} with step {step}");
        ensure!(
            len == 0 || start + (len - 1) * step < self.shape[axis],
            "slice {start}+{len}×{step} out of axis length {}",
            self.shape[axis]
        );
        let mut v = self.clone();
        v.offset += start * self.strides[axis];
        v.shape[axis] = len;
        v.strides[axis] *= step;
        Ok(v)
    }

    /// The flat element index (in the underlying tensor) of a multi-index.
    pub fn flat_index(&self, idx: &[usize]) -> Result<usize> {
        ensure!(idx.len() == self.shape.len(), "index {idx:?} for view shape {:?}", self.shape);
        let mut flat = self.offset;
        for ((&i, &s), &st) in idx.iter().zip(&self.shape).zip(&self.strides) {
            ensure!(i < s, "index {idx:?} out of view shape {:?}", self.shape);
            flat += i * st;
        }
        Ok(flat)
    }

    /// The digits of the label at a multi-index.
    pub fn label_digits(&self, idx: &[usize]) -> Result<&'a [u16]> {
        let i = self.flat_index(idx)?;
        Ok(self.tensor.label_digits(i))
    }

    /// The label at a multi-index.
    pub fn get(&self, idx: &[usize]) -> Result<Label> {
        self.tensor.get(self.flat_index(idx)?)
    }
}

/// One [`LabelTensor`] per residue of a CRT base, all of the same shape.
#[derive(Clone, Debug)]
pub struct CrtTensor {
    base: CrtBase,
    residues: Vec<LabelTensor>,
}

impl CrtTensor {
    /// All-zero labels on every residue.
    pub fn zeros(base: &CrtBase, shape: &[usize]) -> CrtTensor {
        CrtTensor {
            base: base.clone(),
            residues: base.moduli().iter().map(|&m| LabelTensor::zeros(m, shape)).collect(),
        }
    }

    /// From per-residue tensors (in base order, equal shapes).
    pub fn from_residues(base: &CrtBase, residues: Vec<LabelTensor>) -> Result<CrtTensor> {
        ensure!(residues.len() == base.len(), "{} residue tensors for a base of {}", residues.len(), base.len());
        for (t, m) in residues.iter().zip(base.moduli()) {
            ensure!(
                t.modulus() == *m,
                "residue tensor of modulus {} where {} was expected",
                t.modulus().value(),
                m.value()
            );
            ensure!(t.shape() == residues[0].shape(), "residue tensors of different shapes");
        }
        Ok(CrtTensor { base: base.clone(), residues })
    }

    /// The base.
    pub fn base(&self) -> &CrtBase {
        &self.base
    }

    /// The shape (the same for every residue).
    pub fn shape(&self) -> &[usize] {
        self.residues[0].shape()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.residues[0].len()
    }

    /// Whether there is no element.
    pub fn is_empty(&self) -> bool {
        self.residues[0].is_empty()
    }

    /// The tensor of residue `j`.
    pub fn residue(&self, j: usize) -> &LabelTensor {
        &self.residues[j]
    }

    /// All residue tensors.
    pub fn residues(&self) -> &[LabelTensor] {
        &self.residues
    }

    /// All residue tensors, mutable.
    pub fn residues_mut(&mut self) -> &mut [LabelTensor] {
        &mut self.residues
    }

    /// Sets the shape of every residue.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<()> {
        for t in &mut self.residues {
            t.reshape(shape)?;
        }
        Ok(())
    }

    /// Element `i` as a bundle of labels.
    pub fn bundle(&self, i: usize) -> Result<Bundle<Label>> {
        let labels = self.residues.iter().map(|t| t.get(i)).collect::<Result<Vec<_>>>()?;
        Ok(Bundle::from_wires(labels)?)
    }

    /// Stores a bundle as element `i`.
    pub fn set_bundle(&mut self, i: usize, bundle: &Bundle<Label>) -> Result<()> {
        ensure!(
            bundle.len() == self.residues.len(),
            "bundle of {} residues for a base of {}",
            bundle.len(),
            self.residues.len()
        );
        for (t, l) in self.residues.iter_mut().zip(bundle.wires()) {
            t.set(i, l)?;
        }
        Ok(())
    }

    /// Every label packed into 128 bits, element-major (element `i`,
    /// residue `j` at `i·k + j`): what the evaluator sends back, and what
    /// the garbler sends as input labels.
    pub fn to_blocks(&self) -> Vec<Block> {
        let k = self.residues.len();
        let mut out = Vec::with_capacity(self.len() * k);
        let mut label = Label::zero(self.residues[0].modulus());
        for i in 0..self.len() {
            for t in &self.residues {
                // Digits in a tensor are always reduced, so this cannot fail.
                if let Ok(l) = Label::from_digits(t.modulus(), t.label_digits(i)) {
                    label = l;
                }
                out.push(label.to_block());
            }
        }
        label.zeroize();
        out
    }

    /// The inverse of [`CrtTensor::to_blocks`]: fails on a wrong count or a
    /// block that packs no label of its modulus.
    pub fn from_blocks(base: &CrtBase, shape: &[usize], blocks: &[Block]) -> Result<CrtTensor> {
        let mut t = CrtTensor::zeros(base, shape);
        let k = base.len();
        if blocks.len() != t.len() * k {
            bail!("expected {} labels ({} elements × {k} residues), got {}", t.len() * k, t.len(), blocks.len());
        }
        for (i, chunk) in blocks.chunks(k).enumerate() {
            for (j, (res, &b)) in t.residues.iter_mut().zip(chunk).enumerate() {
                let l = Label::from_block(res.modulus(), b).with_context(|| format!("label {j} of element {i}"))?;
                res.label_digits_mut(i).copy_from_slice(l.digits());
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn layout_views_and_blocks() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let base = CrtBase::first(4).unwrap();
        let mut t = CrtTensor::zeros(&base, &[2, 3, 4]);
        let mut labels = Vec::new();
        for i in 0..t.len() {
            let b = Bundle::from_wires(base.moduli().iter().map(|&m| Label::random(m, &mut rng))).unwrap();
            t.set_bundle(i, &b).unwrap();
            labels.push(b);
        }
        for (i, b) in labels.iter().enumerate() {
            for (j, l) in b.wires().iter().enumerate() {
                assert_eq!(t.residue(j).label_digits(i), l.digits());
            }
        }
        let r = t.residue(2);
        assert_eq!(r.index(&[1, 2, 3]).unwrap(), 23);
        assert!(r.index(&[2, 0, 0]).is_err());
        // Every other column of channel 1, rows 1..3.
        let v = r.view().slice(0, 1, 1, 1).unwrap().slice(1, 1, 2, 1).unwrap().slice(2, 0, 2, 2).unwrap();
        assert_eq!(v.shape(), &[1, 2, 2]);
        assert_eq!(v.flat_index(&[0, 1, 1]).unwrap(), 12 + 2 * 4 + 2);
        assert_eq!(v.get(&[0, 1, 1]).unwrap().digits(), labels[22].wires()[2].digits());
        assert!(r.view().slice(2, 3, 2, 1).is_err());
        let blocks = t.to_blocks();
        let back = CrtTensor::from_blocks(&base, &[2, 3, 4], &blocks).unwrap();
        assert_eq!(back.residue(3).digits(), t.residue(3).digits());
        assert!(CrtTensor::from_blocks(&base, &[2, 3, 4], &blocks[1..]).is_err());
        let mut bad = blocks.clone();
        bad[2] = Block(u128::MAX); // p = 5: 5^55 < 2^128
        assert!(CrtTensor::from_blocks(&base, &[2, 3, 4], &bad).is_err());
        assert!(LabelTensor::from_digits(base.moduli()[0], &[2], vec![0; 2 * 128]).is_ok());
        assert!(LabelTensor::from_digits(base.moduli()[0], &[2], vec![2; 2 * 128]).is_err());
    }
}

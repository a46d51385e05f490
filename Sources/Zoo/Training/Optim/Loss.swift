import Foundation

public enum Loss {
    /// Mean cross-entropy of `logits` (N×K) against class `labels`, with PyTorch's label smoothing:
    /// target = (1 - eps) * onehot + eps / K. Returns the loss and dLoss/dlogits.
    public static func crossEntropy(logits: Tensor, labels: [Int], labelSmoothing eps: Float = 0) -> (loss: Float, grad: Tensor) {
        let n = logits.shape[0], k = logits.count / max(n, 1)
        var grad = [Float](repeating: 0, count: logits.count)
        var total = 0.0
        for i in 0..<n {
            let row = i * k
            var m = -Float.infinity
            for j in 0..<k { m = max(m, logits.data[row + j]) }
            var s = 0.0
            for j in 0..<k { s += exp(Double(logits.data[row + j] - m)) }
            let lse = Double(m) + log(s)
            var li = 0.0
            for j in 0..<k {
                let logp = Double(logits.data[row + j]) - lse
                let q = Double(eps) / Double(k) + (j == labels[i] ? Double(1 - eps) : 0)
                li -= q * logp
                grad[row + j] = Float((exp(logp) - q) / Double(n))
            }
            total += li
        }
        return (Float(total / Double(max(n, 1))), Tensor(shape: logits.shape, data: grad))
    }

    /// Mean squared error over all elements.
    public static func mse(prediction: Tensor, target: Tensor) -> (loss: Float, grad: Tensor) {
        var s = 0.0
        var g = [Float](repeating: 0, count: prediction.count)
        let n = Float(prediction.count)
        for i in 0..<prediction.count {
            let d = prediction.data[i] - target.data[i]
            s += Double(d * d)
            g[i] = 2 * d / n
        }
        return (Float(s / Double(max(prediction.count, 1))), Tensor(shape: prediction.shape, data: g))
    }

    /// Number of rows whose arg-max equals the label.
    public static func correct(logits: Tensor, labels: [Int]) -> Int {
        let n = logits.shape[0], k = logits.count / max(n, 1)
        var c = 0
        for i in 0..<n {
            var best = 0
            for j in 1..<max(k, 1) where logits.data[i * k + j] > logits.data[i * k + best] { best = j }
            if best == labels[i] { c += 1 }
        }
        return c
    }
}

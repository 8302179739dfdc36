"""A plain re-implementation of the exercise's loops — the baseline xrnn is timed against.

Written the way the exercise writes them: NumPy, one cell call per step, the four gate GEMMs
separately on a freshly concatenated ``[a_prev; xt]``, a list of per-step cache tuples, and the
output layer inside the loop. Only the exercise's errata are fixed (the backward carries
``da_prev``/``dc_prev`` and uses the corrected gate derivatives), so the results equal xrnn's and
the comparison is of speed alone. Not part of the package.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x):
    e_x = np.exp(x - np.max(x, axis=0, keepdims=True))
    return e_x / e_x.sum(axis=0, keepdims=True)


# --- LSTM ---------------------------------------------------------------------------------


def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    Wf, bf = parameters["Wf"], parameters["bf"]
    Wi, bi = parameters["Wi"], parameters["bi"]
    Wc, bc = parameters["Wc"], parameters["bc"]
    Wo, bo = parameters["Wo"], parameters["bo"]
    concat = np.concatenate((a_prev, xt), axis=0)
    ft = sigmoid(np.dot(Wf, concat) + bf)
    it = sigmoid(np.dot(Wi, concat) + bi)
    cct = np.tanh(np.dot(Wc, concat) + bc)
    c_next = ft * c_prev + it * cct
    ot = sigmoid(np.dot(Wo, concat) + bo)
    a_next = ot * np.tanh(c_next)
    yt_pred = None
    if "Wy" in parameters:
        yt_pred = softmax(np.dot(parameters["Wy"], a_next) + parameters["by"])
    cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)
    return a_next, c_next, yt_pred, cache


def lstm_forward(x, a0, parameters):
    caches = []
    n_x, m, T_x = x.shape
    n_a = a0.shape[0]
    a = np.zeros((n_a, m, T_x), dtype=x.dtype)
    c = np.zeros((n_a, m, T_x), dtype=x.dtype)
    y = None
    if "Wy" in parameters:
        y = np.zeros((parameters["Wy"].shape[0], m, T_x), dtype=x.dtype)
    a_next = a0
    c_next = np.zeros_like(a0)
    for t in range(T_x):
        a_next, c_next, yt, cache = lstm_cell_forward(x[:, :, t], a_next, c_next, parameters)
        a[:, :, t] = a_next
        c[:, :, t] = c_next
        if y is not None:
            y[:, :, t] = yt
        caches.append(cache)
    return a, y, c, (caches, x)


def lstm_cell_backward(da_next, dc_next, cache):
    (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters) = cache
    n_a, m = a_next.shape
    tc = np.tanh(c_next)
    dc = dc_next + da_next * ot * (1 - tc**2)
    dot = da_next * tc * ot * (1 - ot)
    dcct = dc * it * (1 - cct**2)
    dit = dc * cct * it * (1 - it)
    dft = dc * c_prev * ft * (1 - ft)
    concat = np.concatenate((a_prev, xt), axis=0)
    dWf = np.dot(dft, concat.T)
    dWi = np.dot(dit, concat.T)
    dWc = np.dot(dcct, concat.T)
    dWo = np.dot(dot, concat.T)
    dbf = np.sum(dft, axis=1, keepdims=True)
    dbi = np.sum(dit, axis=1, keepdims=True)
    dbc = np.sum(dcct, axis=1, keepdims=True)
    dbo = np.sum(dot, axis=1, keepdims=True)
    dconcat = (
        np.dot(parameters["Wf"].T, dft)
        + np.dot(parameters["Wi"].T, dit)
        + np.dot(parameters["Wc"].T, dcct)
        + np.dot(parameters["Wo"].T, dot)
    )
    return {
        "dxt": dconcat[n_a:, :], "da_prev": dconcat[:n_a, :], "dc_prev": dc * ft,
        "dWf": dWf, "dbf": dbf, "dWi": dWi, "dbi": dbi,
        "dWc": dWc, "dbc": dbc, "dWo": dWo, "dbo": dbo,
    }  # fmt: skip


def lstm_backward(da, caches):
    (caches, x) = caches
    n_a, m, T_x = da.shape
    n_x = x.shape[0]
    dx = np.zeros((n_x, m, T_x), dtype=da.dtype)
    da_prevt = np.zeros((n_a, m), dtype=da.dtype)
    dc_prevt = np.zeros((n_a, m), dtype=da.dtype)
    grads = {k: np.zeros((n_a, n_a + n_x), dtype=da.dtype) for k in ("dWf", "dWi", "dWc", "dWo")}
    grads.update({k: np.zeros((n_a, 1), dtype=da.dtype) for k in ("dbf", "dbi", "dbc", "dbo")})
    for t in reversed(range(T_x)):
        g = lstm_cell_backward(da[:, :, t] + da_prevt, dc_prevt, caches[t])
        dx[:, :, t] = g["dxt"]
        for k in grads:
            grads[k] += g[k]
        da_prevt, dc_prevt = g["da_prev"], g["dc_prev"]
    return {"dx": dx, "da0": da_prevt, "dc0": dc_prevt, **grads}


# --- RNN ----------------------------------------------------------------------------------


def rnn_cell_forward(xt, a_prev, parameters):
    a_next = np.tanh(
        np.dot(parameters["Wax"], xt) + np.dot(parameters["Waa"], a_prev) + parameters["ba"]
    )
    yt_pred = None
    if "Wya" in parameters:
        yt_pred = softmax(np.dot(parameters["Wya"], a_next) + parameters["by"])
    return a_next, yt_pred, (a_next, a_prev, xt, parameters)


def rnn_forward(x, a0, parameters):
    caches = []
    n_x, m, T_x = x.shape
    n_a = a0.shape[0]
    a = np.zeros((n_a, m, T_x), dtype=x.dtype)
    a_next = a0
    for t in range(T_x):
        a_next, _, cache = rnn_cell_forward(x[:, :, t], a_next, parameters)
        a[:, :, t] = a_next
        caches.append(cache)
    return a, None, (caches, x)


def rnn_cell_backward(da_next, cache):
    (a_next, a_prev, xt, parameters) = cache
    dtanh = (1 - a_next**2) * da_next
    return {
        "dxt": np.dot(parameters["Wax"].T, dtanh),
        "dWax": np.dot(dtanh, xt.T),
        "da_prev": np.dot(parameters["Waa"].T, dtanh),
        "dWaa": np.dot(dtanh, a_prev.T),
        "dba": np.sum(dtanh, axis=1, keepdims=True),
    }


def rnn_backward(da, caches):
    (caches, x) = caches
    n_a, m, T_x = da.shape
    n_x = x.shape[0]
    dx = np.zeros((n_x, m, T_x), dtype=da.dtype)
    dWax = np.zeros((n_a, n_x), dtype=da.dtype)
    dWaa = np.zeros((n_a, n_a), dtype=da.dtype)
    dba = np.zeros((n_a, 1), dtype=da.dtype)
    da_prevt = np.zeros((n_a, m), dtype=da.dtype)
    for t in reversed(range(T_x)):
        g = rnn_cell_backward(da[:, :, t] + da_prevt, caches[t])
        dx[:, :, t] = g["dxt"]
        dWax += g["dWax"]
        dWaa += g["dWaa"]
        dba += g["dba"]
        da_prevt = g["da_prev"]
    return {"dx": dx, "da0": da_prevt, "dWax": dWax, "dWaa": dWaa, "dba": dba}

"""Whole-network accelerators: one engine per layer of a :class:`sw.network.Network`, chained by streams.

Every layer becomes an engine (``docs/network.md``, ``docs/cnn.md``): a dense layer's PE(s), their weights in
on-chip memories initialised from the network, a double-buffered input buffer (each input vector is read from the
stream once), a sequencer over the output rows, and a requantisation + clipping unit whose integer arithmetic is
:mod:`sw.requant`'s; a convolution's the same PEs behind a line buffer and a window sequencer; a pool's a
streaming reduction. The accelerator chains the engines between an input stream of features and an output stream
of logits with their argmax.

The package, by concern:

================  =====================================================================================
``folding``       :class:`LayerFolding`, :class:`Folding`, :class:`Budget`, :func:`folding_text`
``plan``          :class:`EnginePlan` and :class:`Slot`: everything derived from a layer and its folding
``engines``       the engine table (:data:`ENGINES`, keyed by layer kind, weight scheme, implementation):
                  plans, candidate foldings, weight memory images, how a slot's beat is packed
``cost``          the cost model: DSPs and memory bits an engine needs, the rank of a folding
``search``        :func:`plan_network`, :func:`default_folding`, :func:`folding_at`, :func:`slowest_interval`
``components``    the parts of an engine: input buffer, sequencer, fan-out, collector, :class:`Requantizer`,
                  crossbar loader, and :class:`Dest` (where a producer's outputs land in its consumer)
``window``        a convolution's line buffer (a ring of input rows) and window sequencer
``pool``          streaming max / sum pooling of windows that do not overlap
``engine``        :class:`Engine`: the parts joined, the same for every folded entry of the engine table
``unrolled``      dense layers as constant adder graphs: the standalone ``UnrolledNetwork`` (a vector per
                  beat) and ``UnrolledUnit``, the component of the table's ``impl="unrolled"`` entries
``accelerator``   :class:`Accelerator`: the engines chained, the input indexed, the logits and argmax
``compiled``      :class:`CompiledNetwork` (the network and its folding, written and read by ``peforge``),
                  :func:`load_compiled`
================  =====================================================================================

Timing of an engine, per input vector (predicted by :class:`EnginePlan`, measured by the testbench): the
buffer takes one element per cycle (``in_features`` cycles); the sequencer issues ``groups x beats`` beats
(times the PE's interval); the collector hands ``groups x slots x width`` results to the requantiser, one per
cycle. The three overlap (two input banks, the PEs' output registers, the collector's register), so an
engine's interval is the largest of the three, and the network's the largest over its engines.
"""

from .accelerator import Accelerator
from .compiled import COMPILED, MEMORIES, TOP, CompiledNetwork, load_compiled
from .components import (BufferRead, Collector, CrossbarLoader, Fanout, InputBuffer, Requantizer, Sequencer,
                         Dest, element_layout)
from .engine import Engine
from .engines import ENGINES, IMPLS, SCHEME_PES, EngineSpec, engine_for, plan_engine
from .folding import (DEFAULT_MAX_LANES, DEFAULT_MAX_MULTIPLIERS, MAX_REQUANT_CYCLES, Budget, Folding, LayerFolding,
                      folding_text)
from .plan import EnginePlan, Slot
from .recurrent import RecurrentEngine, RecurrentUnit
from .search import candidates, default_folding, folding_at, plan_network, slowest_interval

__all__ = ["LayerFolding", "Folding", "EnginePlan", "Slot", "plan_engine", "plan_network", "default_folding",
           "folding_at", "slowest_interval", "candidates", "element_layout", "Budget", "Requantizer", "Engine",
           "Accelerator", "CompiledNetwork", "load_compiled", "SCHEME_PES", "folding_text", "ENGINES", "IMPLS",
           "EngineSpec", "engine_for", "InputBuffer", "Sequencer", "Fanout", "Collector", "CrossbarLoader",
           "BufferRead", "Dest", "COMPILED", "TOP", "MEMORIES", "DEFAULT_MAX_LANES", "DEFAULT_MAX_MULTIPLIERS",
           "MAX_REQUANT_CYCLES"]

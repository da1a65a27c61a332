"""What a compiled program costs, by the compiler's own numbers.

XLA reports FLOPs and bytes accessed (cost_analysis) and its memory plan
(memory_analysis). The TPU compiler also writes its cost model's estimate
into each instruction it schedules (backend_config "estimated_cycles").
Summing those for what runs, once per run of each instruction:
  - the entry computation's instructions, each once;
  - a `while` loop's body and condition times its known trip count (once
    where the compiler knows none; `unknown_trip_counts` says how many);
  - of a `conditional`'s branches, the costliest (one runs; for the step's
    non-finite guard that is the update);
  - a `call`'s callee; never the insides of fusions (the fusion carries
    the estimate) or of reductions' combiners.
Collectives carry no estimate and are not in the sum; neither is any
overlap of asynchronous copies with compute. Estimates, not measurements.
"""

import dataclasses
import re

_HEADER = re.compile(r"^(?:ENTRY )?%([\w.\-]+) .*\{$")
_NAME = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = ")
_OPCODE = re.compile(r"([\w\-]+)\(")
_CYCLES = re.compile(r'"estimated_cycles":"?(\d+)')
_TRIPS = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLEES = {
    "while": re.compile(r"(?:body|condition)=%([\w.\-]+)"),
    "conditional": re.compile(
        r"(?:true_computation|false_computation)=%([\w.\-]+)|"
        r"branch_computations=\{([^}]*)\}"),
    "call": re.compile(r"to_apply=%([\w.\-]+)"),
}


@dataclasses.dataclass(frozen=True)
class Instruction:
  opcode: str
  op_name: str  # the JAX operation it came from (metadata)
  cycles: int  # its own estimate, 0 where it has none
  line: str


@dataclasses.dataclass
class Costs:
  cycles: int
  # (cycles counted, instruction): every instruction with an estimate, at
  # the count it runs (a loop body's times its trips).
  instructions: list[tuple[int, Instruction]]
  unknown_trip_counts: int = 0


def _parse_instruction(line: str) -> Instruction | None:
  name = _NAME.match(line)
  if not name:
    return None
  rest = line[name.end():]
  # Past the shape (one token, or a tuple in balanced parentheses) to the
  # opcode.
  depth, end = 0, 0
  for end, char in enumerate(rest):
    depth += char == "("
    depth -= char == ")"
    if char == " " and depth == 0:
      break
  opcode = _OPCODE.match(rest[end + 1:])
  cycles = _CYCLES.search(line)
  op_name = _OP_NAME.search(line)
  return Instruction(opcode.group(1) if opcode else "",
                     op_name.group(1) if op_name else "",
                     int(cycles.group(1)) if cycles else 0, line)


def computations(hlo_text: str) -> tuple[dict[str, list[Instruction]], str]:
  """(computation name -> its instructions, the entry's name)."""
  bodies, entry, current = {}, None, None
  for line in hlo_text.splitlines():
    header = _HEADER.match(line)
    if header:
      current = bodies.setdefault(header.group(1), [])
      if line.startswith("ENTRY"):
        entry = header.group(1)
    elif line.startswith("}"):
      current = None
    elif current is not None:
      instruction = _parse_instruction(line)
      if instruction is not None:
        current.append(instruction)
  if entry is None:
    raise ValueError("no ENTRY computation in the HLO text")
  return bodies, entry


def estimated_cycles(hlo_text: str) -> Costs:
  """The summed estimated cycles of what a run of the program executes (the
  module docstring's rules)."""
  bodies, entry = computations(hlo_text)
  costs = Costs(0, [])

  def run(name: str, times: int) -> int:
    total = 0
    for instruction in bodies[name]:
      if instruction.cycles:
        total += instruction.cycles * times
        costs.instructions.append((instruction.cycles * times, instruction))
      pattern = _CALLEES.get(instruction.opcode)
      if pattern is None:
        continue
      callees = [name.strip().lstrip("%")
                 for found in pattern.findall(instruction.line)
                 for group in ([found] if isinstance(found, str) else found)
                 for name in group.split(",") if name.strip()]
      if instruction.opcode == "while":
        trips = _TRIPS.search(instruction.line)
        costs.unknown_trip_counts += trips is None
        n = int(trips.group(1)) if trips else 1
        total += sum(run(callee, times * n) for callee in callees)
      elif instruction.opcode == "conditional":
        total += _costliest_branch(callees, times)
      else:
        total += sum(run(callee, times) for callee in callees)
    return total

  def _costliest_branch(branches: list[str], times: int) -> int:
    # Each branch is summed on the side; only the costliest one's
    # instructions join the list.
    kept = len(costs.instructions)
    best, best_list = 0, []
    for branch in branches:
      del costs.instructions[kept:]
      cost = run(branch, times)
      if cost >= best:
        best, best_list = cost, costs.instructions[kept:]
    costs.instructions[kept:] = best_list
    return best

  costs.cycles = run(entry, 1)
  costs.instructions.sort(key=lambda pair: -pair[0])
  return costs


def by_operation(costs: Costs) -> list[tuple[int, int, str]]:
  """(cycles, instructions, operation) per JAX operation, costliest first:
  the instructions' op_name metadata with numbers as N, so the blocks of a
  network (block_0 ... block_11) and both views add up to one line."""
  groups: dict[str, list[int]] = {}
  for cycles, instruction in costs.instructions:
    name = re.sub(r"\d+", "N", instruction.op_name or instruction.opcode)
    group = groups.setdefault(name, [0, 0])
    group[0] += cycles
    group[1] += 1
  return sorted(((c, n, name) for name, (c, n) in groups.items()),
                reverse=True)

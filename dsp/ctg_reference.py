"""Numeric CTG definitions, with their sources.

FIGO 2015: Ayres-de-Campos D, Spong CY, Chandraharan E; FIGO Intrapartum Fetal Monitoring
Expert Consensus Panel. FIGO consensus guidelines on intrapartum fetal monitoring:
Cardiotocography. Int J Gynaecol Obstet 2015;131:13-24.
Dawes-Redman: Dawes GS, Moulden M, Redman CWG. System 8000: computerized antenatal FHR
analysis. J Perinat Med 1991;19:47-51; Dawes GS, Moulden M, Redman CWG. Improvements in
computerized fetal heart rate analysis antepartum. J Perinat Med 1996;24:25-36; Street P
et al. Short-term variation in abnormal antenatal fetal heart rate records. Am J Obstet
Gynecol 1991;165:515-523.
"""

POINT_RATE_HZ = 4.0  # CTG point rate
POINT_S = 1.0 / POINT_RATE_HZ  # 0.25 s between trace points, on the wire and on the strip

# Baseline (FIGO 2015, sec. "Baseline"): mean level of the most horizontal and least
# oscillatory segments, estimated over 10-min periods; normal 110-160 bpm.
BASELINE_WINDOW_S = 600.0
# The level is read from a 20 min context centred on each 10 min period, so that a
# prolonged deceleration (3-10 min) cannot become the baseline of its own period.
BASELINE_CONTEXT_S = 1200.0
BASELINE_NORMAL_BPM = (110.0, 160.0)
BASELINE_PATHOLOGICAL_BELOW_BPM = 100.0  # FIGO 2015 Table: pathological baseline <100
BASELINE_EXCLUDE_BPM = 10.0  # points this far from the running level are not "horizontal"

# Variability (FIGO 2015): bandwidth of the oscillations in 1-min segments, excluding
# accelerations and decelerations; normal 5-25 bpm; reduced <5 bpm for >50 min in baseline
# segments; increased (saltatory) >25 bpm for >30 min.
VARIABILITY_SEGMENT_S = 60.0
VARIABILITY_NORMAL_BPM = (5.0, 25.0)
REDUCED_VARIABILITY_PATHOLOGICAL_MIN = 50.0
INCREASED_VARIABILITY_PATHOLOGICAL_MIN = 30.0

# Accelerations (FIGO 2015): abrupt increase >15 bpm above baseline lasting >15 s and
# <10 min (10 bpm / 10 s before 32 weeks; intrapartum traces are at term here).
ACCEL_MIN_BPM = 15.0
ACCEL_MIN_S = 15.0
ACCEL_MAX_S = 600.0

# Decelerations (FIGO 2015): decrease >15 bpm below baseline lasting >15 s. Early: gradual
# (onset to nadir >=30 s), nadir coincident with the contraction peak. Late: gradual, nadir
# delayed >20 s after the contraction peak. Variable: rapid drop (onset to nadir <30 s).
# Prolonged: >3 min; >5 min is pathological.
DECEL_MIN_BPM = 15.0
DECEL_MIN_S = 15.0
DECEL_GRADUAL_ONSET_S = 30.0
DECEL_LATE_NADIR_DELAY_S = 20.0
DECEL_PROLONGED_S = 180.0
DECEL_PROLONGED_PATHOLOGICAL_S = 300.0
# Repetitive: decelerations with >50% of contractions (FIGO 2015). Pathological if
# repetitive late or prolonged decelerations last >30 min (>20 min with reduced variability).
REPETITIVE_FRACTION = 0.5
REPETITIVE_PATHOLOGICAL_MIN = 30.0
REPETITIVE_PATHOLOGICAL_REDUCED_VAR_MIN = 20.0
# Without a contraction channel, "repetitive" is approximated as >=3 decelerations in any
# 10 min (FIGO normal contraction frequency is up to 5 per 10 min, so >50% of them).
REPETITIVE_WITHOUT_UC_PER_10MIN = 3

# Episode edges: an episode begins and ends where the trace returns within this distance
# of the baseline.
EPISODE_EDGE_BPM = 5.0

# Sinusoidal pattern (FIGO 2015): regular smooth undulation, amplitude 5-15 bpm,
# frequency 3-5 cycles/min, lasting >30 min, with no accelerations.
SINUSOIDAL_AMPLITUDE_BPM = (5.0, 15.0)
SINUSOIDAL_CYCLES_PER_MIN = (3.0, 5.0)
SINUSOIDAL_MIN_MIN = 30.0
SINUSOIDAL_POWER_FRACTION = 0.6  # share of the detrended power in the 3-5 cpm band

# Short-term variation (Dawes-Redman): mean absolute difference between successive 1/16-min
# (3.75 s) epoch mean pulse intervals, in ms, outside decelerations. Antenatal criterion:
# STV >=3 ms; STV <2.6 ms is associated with metabolic acidaemia (Street et al. 1991).
STV_EPOCH_S = 3.75
STV_MIN_NORMAL_MS = 3.0
STV_ACIDAEMIA_MS = 2.6

# Interpretation needs enough signal: FIGO 2015 advises against interpreting a trace with
# substantial signal loss; here >50% missing or <10 min of trace gives "indeterminate".
MAX_SIGNAL_LOSS_PCT = 50.0
MIN_TRACE_S = 600.0

# Contractions from the tocodynamometer channel (relative units).
UC_MIN_PROMINENCE = 10.0
UC_MIN_WIDTH_S = 30.0

# CTG paper (FIGO 2015, "Cardiotocography", technical aspects): a paper speed of 1 cm/min with
# an FHR scale of 20 bpm/cm, or 3 cm/min (the North American speed) with 30 bpm/cm, over
# 50-210 bpm (the range the analyses accept: ctg_artefact.VALID_RANGE_BPM); the uterine-activity
# channel 0-100 (mmHg, or a tocodynamometer's relative units) underneath. Either scale may be
# chosen at either speed. Thin rules every 10 bpm and every half centimetre of time, bold rules
# on the centimetre lines (multiples of the scale's bpm/cm, each centimetre of time). The nurse
# view's strip and the session report both draw from these.
PAPER_SPEEDS_CM_PER_MIN = (1.0, 3.0)
PAPER_FHR_SCALES_BPM_PER_CM = (20.0, 30.0)
PAPER_MINOR_BPM = 10.0
PAPER_MINOR_CM = 0.5
PAPER_UA_RANGE = (0.0, 100.0)
PAPER_UA_PER_CM = 25.0  # 0-100 over 4 cm
# Time labels (24-hour clock) on every this-many centimetres: 5 min at 1 cm/min, 1 min at 3
PAPER_LABEL_EVERY_CM = {1.0: 5.0, 3.0: 3.0}

"""Known drugs of the ten MoA classes: the library a synthetic screen draws its compounds from.

Every compound of a synthetic screen is a real drug with its real structure: ``AURK-1`` might be
alisertib, ``TOPO-H2`` irinotecan (:mod:`lcd_core.synth.compounds` draws them per seed).  The ten
classes are those of the paper (and of the Broad Drug Repurposing Hub annotations it follows):
:data:`DRUGS` holds at least 17 drugs per class, so a paper-scale screen (8 training + 9 holdout
compounds per class) can be drawn without repeating a drug.

How the structures were written
    Each SMILES was written from the literature, with the stereochemistry of its IUPAC name
    (stereo centres and double bonds set from their CIP labels, sugars from the D-glucose
    template), and cross-checked by InChIKey, stereo included, against the sample table of the
    Broad Drug Repurposing Hub (2020-03-24) wherever the hub lists the drug.  Where the two
    disagree the structure here follows the IUPAC name: geldanamycin (the hub's own
    tanespimycin / alvespimycin have our 4E,6Z,10E), ouabain (3β-rhamnoside; the hub has the
    3-epimer), digoxin (13β-methyl like the hub's digoxigenin) and the proton-pump inhibitors
    (racemic sulfoxides).  Drugs the hub does not list, or whose structure rests on it alone,
    say so in their note.  Stereo is left out only where the drug is a racemate.

Polypharmacology and inactive compounds
    :data:`POLYPHARMACOLOGY` holds one real two-target drug per pair of ``design.POLY_PAIRS``:
    TAK-901 (Aurora kinase + JAK, the paper's example), novobiocin (HSP90 C-terminal domain +
    the ATPase site of type II topoisomerases: bacterial gyrase, weakly human topoisomerase II)
    and (R)-sulforaphane (an HDAC inhibitor that also inhibits tubulin polymerisation).
    :data:`INACTIVE` holds drugs labelled PARP inhibitors that are phenotypically silent at
    screening doses: iniparib (sold as a PARP inhibitor, it does not inhibit PARP), hypoxanthine
    and nicotinamide (millimolar PARP inhibitors).

No two entries of the whole library share a canonical SMILES (``lcd_assets_tests/test_synth_drugs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lcd_core.synth.design import MOAS


@dataclass(frozen=True)
class Drug:
    """A known drug: name, MoA class, structure and how it fits its class.

    Attributes
    ----------
    name : str
        Common name (INN where there is one, else the research code).
    moa : str
        Its MoA class (one of ``design.MOAS``).
    smiles : str
        Isomeric SMILES of the parent compound (no salt or solvent).
    moa_secondary : str
        Second MoA class of a polypharmacology drug ("" for the others).
    note : str
        Target detail, stereo or source remarks ("" when none).
    """

    name: str
    moa: str
    smiles: str
    moa_secondary: str = ""
    note: str = ""


def _drugs(moa: str, rows: tuple[tuple[str, ...], ...]) -> tuple[Drug, ...]:
    """``Drug`` objects of one class from ``(name, smiles[, note])`` rows."""
    return tuple(Drug(name=r[0], moa=moa, smiles=r[1], note=r[2] if len(r) > 2 else "") for r in rows)


_TABLE: dict[str, tuple[tuple[str, ...], ...]] = {
    "Aurora kinase": (
        ("alisertib", "COc1cc(Nc2ncc3c(n2)-c2ccc(Cl)cc2C(c2c(F)cccc2OC)=NC3)ccc1C(=O)O"),
        ("MLN8054", "O=C(O)c1ccc(Nc2ncc3c(n2)-c2ccc(Cl)cc2C(c2c(F)cccc2F)=NC3)cc1"),
        ("barasertib-hQPA", "CCN(CCO)CCCOc1ccc2c(Nc3cc(CC(=O)Nc4cccc(F)c4)[nH]n3)ncnc2c1"),
        ("tozasertib", "Cc1cc(Nc2cc(N3CCN(C)CC3)nc(Sc3ccc(NC(=O)C4CC4)cc3)n2)n[nH]1"),
        ("danusertib", "CO[C@@H](C(=O)N1Cc2[nH]nc(NC(=O)c3ccc(N4CCN(C)CC4)cc3)c2C1)c1ccccc1"),
        ("AMG-900", "Cc1csc(-c2nnc(Nc3ccc(Oc4ncccc4-c4ccnc(N)n4)cc3)c3ccccc23)c1"),
        ("ZM-447439", "COc1cc2c(Nc3ccc(NC(=O)c4ccccc4)cc3)ncnc2cc1OCCCN1CCOCC1"),
        (
            "hesperadin",
            "CCS(=O)(=O)Nc1ccc2c(c1)/C(=C(/Nc1ccc(CN3CCCCC3)cc1)c1ccccc1)C(=O)N2",
            "Z (the NH hydrogen-bonded to the oxindole C=O)",
        ),
        ("ENMD-2076", "Cc1cc(Nc2cc(N3CCN(C)CC3)nc(/C=C/c3ccccc3)n2)n[nH]1"),
        ("AT9283", "O=C(Nc1c[nH]nc1-c1nc2cc(CN3CCOCC3)ccc2[nH]1)NC1CC1"),
        ("SNS-314", "O=C(Nc1cccc(Cl)c1)Nc1ncc(CCNc2ncnc3ccsc23)s1"),
        ("CYC116", "Cc1nc(N)sc1-c1ccnc(Nc2ccc(N3CCOCC3)cc2)n1"),
        ("reversine", "c1nc2c(NC3CCCCC3)nc(Nc3ccc(N4CCOCC4)cc3)nc2[nH]1"),
        ("KW-2449", "O=C(c1ccc(/C=C/c2n[nH]c3ccccc23)cc1)N1CCNCC1"),
        (
            "fisetin",
            "O=c1c(O)c(-c2ccc(O)c(O)c2)oc2cc(O)ccc12",
            "flavonol, weak and promiscuous Aurora B inhibitor",
        ),
        ("GSK1070916", "CCn1cc(-c2ccnc3[nH]c(-c4cccc(CN(C)C)c4)cc23)c(-c2ccc(NC(=O)N(C)C)cc2)n1"),
        ("PF-03814735", "CC(=O)NCC(=O)N1[C@@H]2CC[C@H]1c1ccc(Nc3ncc(C(F)(F)F)c(NC4CCC4)n3)cc12"),
        ("CCT137690", "Cc1cc(CN2CCN(c3c(Br)cnc4nc(-c5ccc(N6CCN(C)CC6)cc5)[nH]c34)CC2)no1"),
    ),
    "HDAC": (
        ("vorinostat", "O=C(CCCCCCC(=O)Nc1ccccc1)NO"),
        ("panobinostat", "Cc1[nH]c2ccccc2c1CCNCc1ccc(/C=C/C(=O)NO)cc1"),
        ("belinostat", "O=C(/C=C/c1cccc(S(=O)(=O)Nc2ccccc2)c1)NO"),
        ("entinostat", "Nc1ccccc1NC(=O)c1ccc(CNC(=O)OCc2cccnc2)cc1"),
        ("mocetinostat", "Nc1ccccc1NC(=O)c1ccc(CNc2nccc(-c3cccnc3)n2)cc1"),
        ("givinostat", "CCN(CC)Cc1ccc2cc(COC(=O)Nc3ccc(C(=O)NO)cc3)ccc2c1"),
        ("trichostatin A", "CC(/C=C/C(=O)NO)=C\\[C@@H](C)C(=O)c1ccc(N(C)C)cc1"),
        ("dacinostat", "O=C(/C=C/c1ccc(CN(CCO)CCc2c[nH]c3ccccc23)cc1)NO"),
        ("abexinostat", "CN(C)Cc1c(C(=O)NCCOc2ccc(C(=O)NO)cc2)oc2ccccc12"),
        ("quisinostat", "Cn1cc(CNCC2CCN(c3ncc(C(=O)NO)cn3)CC2)c2ccccc21"),
        ("pracinostat", "CCCCc1nc2cc(/C=C/C(=O)NO)ccc2n1CCN(CC)CC"),
        ("tacedinaline", "CC(=O)Nc1ccc(C(=O)Nc2ccccc2N)cc1"),
        ("resminostat", "CN(C)Cc1ccc(S(=O)(=O)n2ccc(/C=C/C(=O)NO)c2)cc1"),
        ("tucidinostat", "Nc1cc(F)ccc1NC(=O)c1ccc(CNC(=O)/C=C/c2cccnc2)cc1"),
        ("tubastatin A", "CN1CCc2c(c3ccccc3n2Cc2ccc(C(=O)NO)cc2)C1"),
        ("ricolinostat", "O=C(CCCCCCNC(=O)c1cnc(N(c2ccccc2)c2ccccc2)nc1)NO"),
        ("M344", "CN(C)c1ccc(C(=O)NCCCCCCC(=O)NO)cc1"),
        ("pyroxamide", "O=C(CCCCCCC(=O)Nc1cccnc1)NO"),
        ("scriptaid", "O=C(CCCCCN1C(=O)c2cccc3cccc(c23)C1=O)NO"),
        ("PCI-34051", "COc1ccc(Cn2ccc3ccc(C(=O)NO)cc32)cc1"),
        ("droxinostat", "Cc1cc(Cl)ccc1OCCCC(=O)NO"),
        ("AR-42", "CC(C)[C@H](C(=O)Nc1ccc(C(=O)NO)cc1)c1ccccc1"),
    ),
    "JAK": (
        ("ruxolitinib", "N#CC[C@H](C1CCCC1)n1cc(-c2ncnc3[nH]ccc23)cn1"),
        ("tofacitinib", "C[C@@H]1CCN(C(=O)CC#N)C[C@@H]1N(C)c1ncnc2[nH]ccc12"),
        ("baricitinib", "CCS(=O)(=O)N1CC(CC#N)(n2cc(-c3ncnc4[nH]ccc34)cn2)C1"),
        ("fedratinib", "Cc1cnc(Nc2ccc(OCCN3CCCC3)cc2)nc1Nc1cccc(S(=O)(=O)NC(C)(C)C)c1"),
        ("momelotinib", "N#CCNC(=O)c1ccc(-c2ccnc(Nc3ccc(N4CCOCC4)cc3)n2)cc1"),
        ("filgotinib", "O=C(Nc1nc2cccc(-c3ccc(CN4CCS(=O)(=O)CC4)cc3)n2n1)C1CC1"),
        ("upadacitinib", "CC[C@@H]1CN(C(=O)NCC(F)(F)F)C[C@@H]1c1cnc2cnc3[nH]ccc3n12"),
        ("pacritinib", "C1CCN(C1)CCOc1ccc2cc1COC/C=C/COCc1cccc(c1)-c1ccnc(n1)N2"),
        ("decernotinib", "CC[C@@](C)(Nc1ccnc(-c2c[nH]c3ncccc23)n1)C(=O)NCC(F)(F)F"),
        ("itacitinib", "N#CCC1(n2cc(-c3ncnc4[nH]ccc34)cn2)CN(C2CCN(C(=O)c3ccnc(C(F)(F)F)c3F)CC2)C1"),
        ("AZD1480", "Cc1cc(Nc2nc(N[C@@H](C)c3ncc(F)cn3)ncc2Cl)n[nH]1"),
        ("TG101209", "Cc1cnc(Nc2ccc(N3CCN(C)CC3)cc2)nc1Nc1cccc(S(=O)(=O)NC(C)(C)C)c1"),
        ("ritlecitinib", "C=CC(=O)N1C[C@H](Nc2ncnc3[nH]ccc23)CC[C@@H]1C"),
        ("WHI-P154", "COc1cc2ncnc(Nc3ccc(O)c(Br)c3)c2cc1OC"),
        ("tyrphostin AG-490", "N#C/C(=C\\c1ccc(O)c(O)c1)C(=O)NCc1ccccc1"),
        (
            "abrocitinib",
            "CCCS(=O)(=O)N[C@H]1C[C@@H](N(C)c2ncnc3[nH]ccc23)C1",
            "cis-1,3-cyclobutane; not in the Repurposing Hub",
        ),
        (
            "oclacitinib",
            "CNS(=O)(=O)C[C@H]1CC[C@H](N(C)c2ncnc3[nH]ccc23)CC1",
            "trans-1,4-cyclohexane; not in the Repurposing Hub",
        ),
    ),
    "HSP": (
        (
            "geldanamycin",
            "COC1=C2C[C@@H](C)C[C@H](OC)[C@H](O)[C@@H](C)/C=C(\\C)[C@H](OC(N)=O)[C@@H](OC)/C=C\\C=C(/"
            "C)C(=O)NC(=CC1=O)C2=O",
        ),
        (
            "tanespimycin",
            "C=CCNC1=C2C[C@@H](C)C[C@H](OC)[C@H](O)[C@@H](C)/C=C(\\C)[C@H](OC(N)=O)[C@@H](OC)/C=C\\C="
            "C(/C)C(=O)NC(=CC1=O)C2=O",
        ),
        (
            "alvespimycin",
            "CO[C@H]1/C=C\\C=C(/C)C(=O)NC2=CC(=O)C(NCCN(C)C)=C(C[C@@H](C)C[C@H](OC)[C@H](O)[C@@H](C)/"
            "C=C(\\C)[C@@H]1OC(N)=O)C2=O",
        ),
        (
            "retaspimycin",
            "C=CCNc1c(O)cc2c(O)c1C[C@@H](C)C[C@H](OC)[C@H](O)[C@@H](C)/C=C(\\C)[C@H](OC(N)=O)[C@@H](O"
            "C)/C=C\\C=C(/C)C(=O)N2",
            "the hydroquinone of tanespimycin",
        ),
        (
            "17-AG",
            "CO[C@H]1/C=C\\C=C(/C)C(=O)NC2=CC(=O)C(N)=C(C[C@@H](C)C[C@H](OC)[C@H](O)[C@@H](C)/C=C(\\C"
            ")[C@@H]1OC(N)=O)C2=O",
            "IPI-493, the 17-amino metabolite of tanespimycin; not in the Repurposing Hub",
        ),
        ("luminespib", "CCNC(=O)c1noc(-c2cc(C(C)C)c(O)cc2O)c1-c1ccc(CN2CCOCC2)cc1"),
        ("ganetespib", "CC(C)c1cc(-c2n[nH]c(=O)n2-c2ccc3c(ccn3C)c2)c(O)cc1O"),
        ("onalespib", "CC(C)c1cc(C(=O)N2Cc3ccc(CN4CCN(C)CC4)cc3C2)c(O)cc1O"),
        ("PU-H71", "CC(C)NCCCn1c(Sc2cc3c(cc2I)OCO3)nc2c(N)ncnc21"),
        (
            "SNX-2112",
            "CC1(C)CC(=O)c2c(C(F)(F)F)nn(-c3ccc(C(N)=O)c(N[C@H]4CC[C@H](O)CC4)c3)c2C1",
            "trans-4-hydroxycyclohexyl",
        ),
        (
            "SNX-5422",
            "CC1(C)CC(=O)c2c(C(F)(F)F)nn(-c3ccc(C(N)=O)c(N[C@H]4CC[C@H](OC(=O)CN)CC4)c3)c2C1",
            "glycinate prodrug of SNX-2112",
        ),
        (
            "radicicol",
            "C[C@@H]1C[C@H]2O[C@@H]2/C=C\\C=C\\C(=O)Cc2c(Cl)c(O)cc(O)c2C(=O)O1",
            "monorden; (4R,6R,8R,9Z,11E), trans epoxide; not in the Repurposing Hub",
        ),
        ("BIIB021", "COc1c(C)cnc(Cn2cnc3c(Cl)nc(N)nc32)c1C"),
        ("pifithrin-mu", "NS(=O)(=O)C#Cc1ccccc1", "HSP70"),
        ("CCT018159", "CCc1cc(-c2n[nH]c(C)c2-c2ccc3c(c2)OCCO3)c(O)cc1O"),
        ("VER-49009", "CCNC(=O)c1n[nH]c(-c2cc(Cl)c(O)cc2O)c1-c1ccc(OC)cc1"),
        (
            "VER-155008",
            "N#Cc1ccc(COC[C@H]2O[C@@H](n3c(NCc4ccc(Cl)c(Cl)c4)nc4c(N)ncnc43)[C@H](O)[C@@H]2O)cc1",
            "HSP70",
        ),
    ),
    "PARP": (
        ("olaparib", "O=C(c1cc(Cc2n[nH]c(=O)c3ccccc23)ccc1F)N1CCN(C(=O)C2CC2)CC1"),
        ("rucaparib", "CNCc1ccc(-c2[nH]c3cc(F)cc4c3c2CCNC4=O)cc1"),
        ("niraparib", "NC(=O)c1cccc2cn(-c3ccc([C@@H]4CCCNC4)cc3)nc12"),
        ("talazoparib", "Cn1ncnc1[C@H]1c2n[nH]c(=O)c3cc(F)cc(c23)N[C@@H]1c1ccc(F)cc1"),
        ("veliparib", "C[C@]1(c2nc3c(C(N)=O)cccc3[nH]2)CCCN1"),
        (
            "pamiparib",
            "C[C@]12CCCN1Cc1n[nH]c(=O)c3cc(F)cc4[nH]c2c1c34",
            "BGB-290; structure as in the Repurposing Hub (C16H15FN4O, (R))",
        ),
        (
            "E7449",
            "O=c1[nH]nc2[nH]c(CN3Cc4ccccc4C3)nc3cccc1c23",
            "structure as in the Repurposing Hub (C18H15N5O), 2,9-dihydro tautomer",
        ),
        ("AZD2461", "COC1CCN(C(=O)c2cc(Cc3n[nH]c(=O)c4ccccc34)ccc2F)CC1"),
        ("PJ34", "CN(C)CC(=O)Nc1ccc2[nH]c(=O)c3ccccc3c2c1"),
        ("3-aminobenzamide", "NC(=O)c1cccc(N)c1"),
        ("NU1025", "Cc1nc2c(O)cccc2c(=O)[nH]1"),
        ("DPQ", "O=C1NCCc2c(OCCCCN3CCCCC3)cccc21", "not in the Repurposing Hub"),
        ("4-ANI", "Nc1ccc2c3c(cccc13)C(=O)NC2=O", "4-amino-1,8-naphthalimide; not in the Repurposing Hub"),
        (
            "A-966492",
            "NC(=O)c1cccc2[nH]c(-c3ccc([C@@H]4CCCN4)cc3F)nc12",
            "(S)-pyrrolidin-2-yl; not in the Repurposing Hub",
        ),
        ("1,5-isoquinolinediol", "O=c1[nH]ccc2c(O)cccc12", "not in the Repurposing Hub"),
        ("AG-14361", "CN(C)Cc1ccc(-c2nc3cccc4c3n2CCNC4=O)cc1"),
        ("4-HQN", "O=c1[nH]cnc2ccccc12"),
    ),
    "protein synthesis": (
        ("cycloheximide", "C[C@@H]1C[C@@H]([C@H](O)CC2CC(=O)NC(=O)C2)C(=O)[C@@H](C)C1"),
        ("anisomycin", "COc1ccc(C[C@H]2NC[C@H](O)[C@H]2OC(C)=O)cc1"),
        ("emetine", "CC[C@H]1CN2CCc3cc(OC)c(OC)cc3[C@@H]2C[C@@H]1C[C@H]1NCCc2cc(OC)c(OC)cc21"),
        (
            "cephaeline",
            "CC[C@H]1CN2CCc3cc(OC)c(OC)cc3[C@@H]2C[C@@H]1C[C@H]1NCCc2cc(OC)c(O)cc21",
            "7'-O-desmethyl emetine; not in the Repurposing Hub",
        ),
        ("puromycin", "COc1ccc(C[C@H](N)C(=O)N[C@H]2[C@@H](O)[C@H](n3cnc4c(N(C)C)ncnc43)O[C@@H]2CO)cc1"),
        (
            "homoharringtonine",
            "COC(=O)C[C@](O)(CCCC(C)(C)O)C(=O)O[C@@H]1C(OC)=C[C@]23CCCN2CCc2cc4c(cc2[C@H]13)OCO4",
        ),
        (
            "harringtonine",
            "COC(=O)C[C@](O)(CCC(C)(C)O)C(=O)O[C@@H]1C(OC)=C[C@]23CCCN2CCc2cc4c(cc2[C@H]13)OCO4",
        ),
        (
            "deoxyharringtonine",
            "COC(=O)C[C@](O)(CCCC(C)C)C(=O)O[C@@H]1C(OC)=C[C@]23CCCN2CCc2cc4c(cc2[C@H]13)OCO4",
            "not in the Repurposing Hub",
        ),
        ("halofuginone", "O=C(C[C@H]1NCCC[C@@H]1O)Cn1cnc2cc(Br)c(Cl)cc2c1=O", "prolyl-tRNA synthetase"),
        (
            "febrifugine",
            "O=C(C[C@H]1NCCC[C@@H]1O)Cn1cnc2ccccc2c1=O",
            "prolyl-tRNA synthetase; (2R,3S) like halofuginone; not in the Repurposing Hub",
        ),
        ("4EGI-1", "O=C(O)C(Cc1ccccc1[N+](=O)[O-])=NNc1nc(-c2ccc(Cl)c(Cl)c2)cs1", "eIF4E/eIF4G interaction"),
        (
            "chloramphenicol",
            "O=C(N[C@H](CO)[C@H](O)c1ccc([N+](=O)[O-])cc1)C(Cl)Cl",
            "inhibits mitochondrial (bacterial-type) ribosomes in human cells",
        ),
        (
            "thiamphenicol",
            "CS(=O)(=O)c1ccc([C@@H](O)[C@@H](CO)NC(=O)C(Cl)Cl)cc1",
            "inhibits mitochondrial ribosomes",
        ),
        (
            "florfenicol",
            "CS(=O)(=O)c1ccc([C@@H](O)[C@@H](CF)NC(=O)C(Cl)Cl)cc1",
            "inhibits mitochondrial ribosomes",
        ),
        ("linezolid", "CC(=O)NC[C@H]1CN(c2ccc(N3CCOCC3)c(F)c2)C(=O)O1", "inhibits mitochondrial ribosomes"),
        ("sutezolid", "CC(=O)NC[C@H]1CN(c2ccc(N3CCSCC3)c(F)c2)C(=O)O1", "inhibits mitochondrial ribosomes"),
        (
            "tedizolid",
            "Cn1nnc(-c2ccc(-c3ccc(N4C[C@H](CO)OC4=O)cc3F)cn2)n1",
            "inhibits mitochondrial ribosomes; checked as its phosphate prodrug in the Repurposing Hub",
        ),
    ),
    "topoisomerase": (
        ("camptothecin", "CC[C@@]1(O)C(=O)OCc2c1cc1n(c2=O)Cc2cc3ccccc3nc2-1"),
        ("topotecan", "CC[C@@]1(O)C(=O)OCc2c1cc1n(c2=O)Cc2cc3c(CN(C)C)c(O)ccc3nc2-1"),
        ("irinotecan", "CCc1c2c(nc3ccc(OC(=O)N4CCC(N5CCCCC5)CC4)cc13)-c1cc3c(c(=O)n1C2)COC(=O)[C@]3(O)CC"),
        ("SN-38", "CCc1c2c(nc3ccc(O)cc13)-c1cc3c(c(=O)n1C2)COC(=O)[C@]3(O)CC"),
        ("10-hydroxycamptothecin", "CC[C@@]1(O)C(=O)OCc2c1cc1n(c2=O)Cc2cc3cc(O)ccc3nc2-1"),
        ("9-aminocamptothecin", "CC[C@@]1(O)C(=O)OCc2c1cc1n(c2=O)Cc2cc3c(N)cccc3nc2-1"),
        ("rubitecan", "CC[C@@]1(O)C(=O)OCc2c1cc1n(c2=O)Cc2cc3c([N+](=O)[O-])cccc3nc2-1"),
        ("belotecan", "CC[C@@]1(O)C(=O)OCc2c1cc1n(c2=O)Cc2c-1nc1ccccc1c2CCNC(C)C"),
        (
            "etoposide",
            "COc1cc([C@@H]2c3cc4c(cc3[C@@H](O[C@@H]3O[C@@H]5CO[C@@H](C)O[C@H]5[C@H](O)[C@H]3O)[C@H]3C"
            "OC(=O)[C@H]23)OCO4)cc(OC)c1O",
        ),
        (
            "teniposide",
            "COc1cc([C@@H]2c3cc4c(cc3[C@@H](O[C@@H]3O[C@@H]5CO[C@@H](c6cccs6)O[C@H]5[C@H](O)[C@H]3O)["
            "C@H]3COC(=O)[C@H]23)OCO4)cc(OC)c1O",
        ),
        (
            "doxorubicin",
            "COc1cccc2c1C(=O)c1c(O)c3c(c(O)c1C2=O)C[C@@](O)(C(=O)CO)C[C@@H]3O[C@H]1C[C@H](N)[C@H](O)["
            "C@H](C)O1",
        ),
        (
            "daunorubicin",
            "COc1cccc2c1C(=O)c1c(O)c3c(c(O)c1C2=O)C[C@@](O)(C(C)=O)C[C@@H]3O[C@H]1C[C@H](N)[C@H](O)[C@H](C)O1",
        ),
        (
            "epirubicin",
            "COc1cccc2c1C(=O)c1c(O)c3c(c(O)c1C2=O)C[C@@](O)(C(=O)CO)C[C@@H]3O[C@H]1C[C@H](N)[C@@H](O)"
            "[C@H](C)O1",
        ),
        (
            "idarubicin",
            "CC(=O)[C@]1(O)Cc2c(O)c3c(c(O)c2[C@@H](O[C@H]2C[C@H](N)[C@H](O)[C@H](C)O2)C1)C(=O)c1ccccc1C3=O",
        ),
        ("mitoxantrone", "O=C1c2c(O)ccc(O)c2C(=O)c2c(NCCNCCO)ccc(NCCNCCO)c21"),
        ("pixantrone", "NCCNc1ccc(NCCN)c2c1C(=O)c1ccncc1C2=O"),
        ("amsacrine", "COc1cc(NS(C)(=O)=O)ccc1Nc1c2ccccc2nc2ccccc12"),
        (
            "dexrazoxane",
            "C[C@@H](CN1CC(=O)NC(=O)C1)N1CC(=O)NC(=O)C1",
            "catalytic topoisomerase II inhibitor, (S)",
        ),
        ("merbarone", "O=C1NC(=S)NC(=O)C1C(=O)Nc1ccccc1", "catalytic topoisomerase II inhibitor"),
        ("ellipticine", "Cc1c2ccncc2c(C)c2c1[nH]c1ccccc12", "also intercalates; not in the Repurposing Hub"),
        ("amonafide", "CN(C)CCN1C(=O)c2cccc3cc(N)cc(c23)C1=O"),
    ),
    "tubulin polymerization": (
        ("colchicine", "COc1cc2c(c(OC)c1OC)-c1ccc(OC)c(=O)cc1[C@@H](NC(C)=O)CC2"),
        (
            "demecolcine",
            "CN[C@H]1CCc2cc(OC)c(OC)c(OC)c2-c2ccc(OC)c(=O)cc21",
            "colcemid, (S) like colchicine; not in the Repurposing Hub",
        ),
        ("combretastatin A-4", "COc1ccc(/C=C\\c2cc(OC)c(OC)c(OC)c2)cc1O"),
        ("fosbretabulin", "COc1ccc(/C=C\\c2cc(OC)c(OC)c(OC)c2)cc1OP(=O)(O)O", "combretastatin A-4 phosphate"),
        ("ombrabulin", "COc1ccc(/C=C\\c2cc(OC)c(OC)c(OC)c2)cc1NC(=O)[C@@H](N)CO", "AVE8062"),
        ("nocodazole", "COC(=O)Nc1nc2ccc(C(=O)c3cccs3)cc2[nH]1"),
        ("podophyllotoxin", "COc1cc([C@@H]2c3cc4c(cc3[C@H](O)[C@H]3COC(=O)[C@H]23)OCO4)cc(OC)c1OC"),
        ("mebendazole", "COC(=O)Nc1nc2ccc(C(=O)c3ccccc3)cc2[nH]1"),
        ("albendazole", "CCCSc1ccc2nc(NC(=O)OC)[nH]c2c1"),
        ("fenbendazole", "COC(=O)Nc1nc2ccc(Sc3ccccc3)cc2[nH]1"),
        ("flubendazole", "COC(=O)Nc1nc2ccc(C(=O)c3ccc(F)cc3)cc2[nH]1"),
        ("oxibendazole", "CCCOc1ccc2nc(NC(=O)OC)[nH]c2c1"),
        ("parbendazole", "CCCCc1ccc2nc(NC(=O)OC)[nH]c2c1"),
        ("carbendazim", "COC(=O)Nc1nc2ccccc2[nH]1"),
        ("plinabulin", "CC(C)(C)c1[nH]cnc1/C=c1\\[nH]c(=O)/c(=C/c2ccccc2)[nH]c1=O"),
        ("2-methoxyestradiol", "COc1cc2c(cc1O)CC[C@@H]1[C@@H]2CC[C@]2(C)[C@@H](O)CC[C@@H]12"),
        ("indibulin", "O=C(Nc1ccncc1)C(=O)c1cn(Cc2ccc(Cl)cc2)c2ccccc12"),
        ("ABT-751", "COc1ccc(S(=O)(=O)Nc2cccnc2Nc2ccc(O)cc2)cc1"),
        ("verubulin", "COc1ccc(N(C)c2nc(C)nc3ccccc23)cc1"),
        ("griseofulvin", "COC1=CC(=O)C[C@@H](C)[C@]12Oc1c(Cl)c(OC)cc(OC)c1C2=O"),
        ("noscapine", "COc1ccc2c(c1OC)C(=O)O[C@@H]2[C@H]1c2c(cc3c(c2OC)OCO3)CCN1C"),
    ),
    "ATPase": (
        (
            "ouabain",
            "C[C@@H]1O[C@@H](O[C@H]2C[C@@H](O)[C@]3(CO)[C@H]4[C@H](O)C[C@]5(C)[C@@H](C6=CC(=O)OC6)CC["
            "C@]5(O)[C@@H]4CC[C@]3(O)C2)[C@H](O)[C@H](O)[C@H]1O",
            "3beta-O-alpha-L-rhamnoside of ouabagenin",
        ),
        (
            "digoxin",
            "C[C@H]1O[C@@H](O[C@H]2[C@@H](O)C[C@H](O[C@H]3[C@@H](O)C[C@H](O[C@H]4CC[C@@]5(C)[C@H](CC["
            "C@@H]6[C@@H]5C[C@@H](O)[C@]5(C)[C@@H](C7=CC(=O)OC7)CC[C@]65O)C4)O[C@@H]3C)O[C@@H]2C)C[C@"
            "H](O)[C@@H]1O",
            "digoxigenin 3beta-O-tris(beta-D-digitoxoside)",
        ),
        (
            "digitoxin",
            "C[C@H]1O[C@@H](O[C@H]2[C@@H](O)C[C@H](O[C@H]3[C@@H](O)C[C@H](O[C@H]4CC[C@@]5(C)[C@H](CC["
            "C@@H]6[C@@H]5CC[C@]5(C)[C@@H](C7=CC(=O)OC7)CC[C@]65O)C4)O[C@@H]3C)O[C@@H]2C)C[C@H](O)[C@"
            "@H]1O",
            "digitoxigenin 3beta-O-tris(beta-D-digitoxoside)",
        ),
        ("digitoxigenin", "C[C@]12CC[C@H](O)C[C@H]1CC[C@@H]1[C@@H]2CC[C@]2(C)[C@@H](C3=CC(=O)OC3)CC[C@]12O"),
        (
            "strophanthidin",
            "C[C@]12CC[C@H]3[C@@H](CC[C@]4(O)C[C@@H](O)CC[C@]34C=O)[C@@]1(O)CC[C@@H]2C1=CC(=O)OC1",
        ),
        (
            "omeprazole",
            "COc1ccc2[nH]c(S(=O)Cc3ncc(C)c(OC)c3C)nc2c1",
            "racemic sulfoxide (esomeprazole is its (S) form)",
        ),
        ("lansoprazole", "Cc1c(OCC(F)(F)F)ccnc1CS(=O)c1nc2ccccc2[nH]1", "racemic sulfoxide"),
        ("pantoprazole", "COc1ccnc(CS(=O)c2nc3cc(OC(F)F)ccc3[nH]2)c1OC", "racemic sulfoxide"),
        ("rabeprazole", "COCCCOc1ccnc(CS(=O)c2nc3ccccc3[nH]2)c1C", "racemic sulfoxide"),
        ("tenatoprazole", "COc1ccc2nc(S(=O)Cc3ncc(C)c(OC)c3C)[nH]c2n1", "racemic sulfoxide"),
        ("vonoprazan", "CNCc1cc(-c2ccccc2F)n(S(=O)(=O)c2cccnc2)c1", "H+/K+-ATPase (potassium-competitive)"),
        ("SCH-28080", "Cc1nc2c(OCc3ccccc3)cccn2c1CC#N", "H+/K+-ATPase (potassium-competitive)"),
        ("2,5-di-tert-butylhydroquinone", "CC(C)(C)c1cc(O)c(C(C)(C)C)cc1O", "BHQ, SERCA Ca2+-ATPase"),
        ("(-)-blebbistatin", "Cc1ccc2c(c1)C(=O)[C@]1(O)CCN(c3ccccc3)C1=N2", "myosin II ATPase, (S)"),
        ("DBeQ", "c1ccc(CNc2nc(NCc3ccccc3)c3ccccc3n2)cc1", "p97/VCP ATPase"),
        (
            "NMS-873",
            "Cc1cc(OCc2nnc(SC3CCCC3)n2-c2cccnc2)ccc1-c1ccc(S(C)(=O)=O)cc1",
            "p97/VCP ATPase (allosteric)",
        ),
        (
            "CB-5083",
            "Cc1cc2c(C(N)=O)cccc2n1-c1nc2c(c(NCc3ccccc3)n1)COCC2",
            "p97/VCP ATPase; 7,8-dihydro-5H-pyrano[4,3-d]pyrimidine core as in the Repurposing Hub",
        ),
    ),
    "retinoid receptor agonist": (
        ("tretinoin", "CC1=C(/C=C/C(C)=C/C=C/C(C)=C/C(=O)O)C(C)(C)CCC1"),
        ("isotretinoin", "CC1=C(/C=C/C(C)=C/C=C/C(C)=C\\C(=O)O)C(C)(C)CCC1"),
        (
            "alitretinoin",
            "CC1=C(/C=C/C(C)=C\\C=C\\C(C)=C\\C(=O)O)C(C)(C)CCC1",
            "9-cis-retinoic acid; not in the Repurposing Hub",
        ),
        ("bexarotene", "C=C(c1ccc(C(=O)O)cc1)c1cc2c(cc1C)C(C)(C)CCC2(C)C"),
        ("tamibarotene", "CC1(C)CCC(C)(C)c2cc(NC(=O)c3ccc(C(=O)O)cc3)ccc21"),
        ("AM580", "CC1(C)CCC(C)(C)c2cc(C(=O)Nc3ccc(C(=O)O)cc3)ccc21"),
        ("acitretin", "COc1cc(C)c(/C=C/C(C)=C/C=C/C(C)=C/C(=O)O)c(C)c1C"),
        ("TTNPB", "C/C(=C\\c1ccc(C(=O)O)cc1)c1ccc2c(c1)C(C)(C)CCC2(C)C"),
        ("adapalene", "COc1ccc(-c2ccc3cc(C(=O)O)ccc3c2)cc1C12CC3CC(CC(C3)C1)C2"),
        ("CD437", "O=C(O)c1ccc2cc(-c3ccc(O)c(C45CC6CC(CC(C6)C4)C5)c3)ccc2c1"),
        ("tazarotene", "CCOC(=O)c1ccc(C#Cc2ccc3c(c2)C(C)(C)CCS3)nc1"),
        ("palovarotene", "CC1(C)CCC(C)(C)c2cc(Cn3cccn3)c(/C=C/c3ccc(C(=O)O)cc3)cc21"),
        ("EC23", "CC1(C)CCC(C)(C)c2cc(C#Cc3ccc(C(=O)O)cc3)ccc21"),
        ("CH55", "CC(C)(C)c1cc(C(=O)/C=C/c2ccc(C(=O)O)cc2)cc(C(C)(C)C)c1"),
        (
            "LG100268",
            "Cc1cc2c(cc1C1(c3ccc(C(=O)O)cn3)CC1)C(C)(C)CCC2(C)C",
            "RXR-selective; not in the Repurposing Hub",
        ),
        ("peretinoin", "CC(C)=CCC/C(C)=C/CC/C(C)=C/C=C/C(C)=C/C(=O)O", "acyclic retinoid"),
        ("fenretinide", "CC1=C(/C=C/C(C)=C/C=C/C(C)=C/C(=O)Nc2ccc(O)cc2)C(C)(C)CCC1", "4-HPR"),
    ),
}

#: The drugs of each MoA class, keyed by the exact labels of ``design.MOAS``.
DRUGS: dict[str, tuple[Drug, ...]] = {moa: _drugs(moa, rows) for moa, rows in _TABLE.items()}

#: One two-target drug per ``(primary, secondary)`` pair of ``design.POLY_PAIRS``.
POLYPHARMACOLOGY: dict[tuple[str, str], Drug] = {
    ("Aurora kinase", "JAK"): Drug(
        "TAK-901",
        "Aurora kinase",
        "CCS(=O)(=O)c1cccc(-c2cc(C(=O)NC3CCN(C)CC3)c(C)c3[nH]c4ncc(C)cc4c23)c1",
        "JAK",
        "Aurora A/B and JAK2 (the paper's polypharmacology example)",
    ),
    ("HSP", "topoisomerase"): Drug(
        "novobiocin",
        "HSP",
        "CO[C@@H]1[C@@H](OC(N)=O)[C@@H](O)[C@H](Oc2ccc3c(O)c(NC(=O)c4ccc(O)c(CC=C(C)C)c4)c(=O)oc3c2C)"
        "OC1(C)C",
        "topoisomerase",
        "HSP90 C-terminal domain; ATPase site of gyrase / topoisomerase II",
    ),
    ("HDAC", "tubulin polymerization"): Drug(
        "sulforaphane",
        "HDAC",
        "C[S@@](=O)CCCCN=C=S",
        "tubulin polymerization",
        "(R)-sulforaphane: HDAC inhibitor, also inhibits tubulin polymerisation",
    ),
}

#: Phenotypically silent drugs labelled with a MoA class (``INACT-1`` … take them in this order).
INACTIVE: tuple[Drug, ...] = (
    Drug("iniparib", "PARP", "NC(=O)c1ccc(I)c([N+](=O)[O-])c1", note="sold as a PARP inhibitor; does not inhibit it"),
    Drug("hypoxanthine", "PARP", "O=c1[nH]cnc2nc[nH]c12", note="inhibits PARP only at millimolar doses"),
    Drug("nicotinamide", "PARP", "NC(=O)c1cccnc1", note="inhibits PARP only at millimolar doses"),
)


def drugs_of(moa: str) -> tuple[Drug, ...]:
    """The drugs of one MoA class.

    Raises
    ------
    ValueError
        For a label that is not one of ``design.MOAS``.
    """
    if moa not in DRUGS:
        raise ValueError(f"no drugs for MoA {moa!r}; the drug table has {sorted(DRUGS)}")
    return DRUGS[moa]


def all_drugs() -> tuple[Drug, ...]:
    """Every drug of the library: the ten classes, then the polypharmacology and inactive drugs."""
    return (*(d for moa in MOAS for d in DRUGS[moa]), *POLYPHARMACOLOGY.values(), *INACTIVE)


__all__ = ["DRUGS", "Drug", "INACTIVE", "POLYPHARMACOLOGY", "all_drugs", "drugs_of"]
